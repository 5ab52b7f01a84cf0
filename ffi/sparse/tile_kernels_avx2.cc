// CPO, CPS and sparse-direct kernels built for the avx2 instruction set (flags set in
// CMakeLists.txt). The code is the template tile_kernels_impl.h; edit that file, not this one.
#include <immintrin.h>

#include <memory>
#include <type_traits>

#include "sparse/tile_kernels.h"

namespace jaxcps {
namespace avx2 {
#define JAXCPS_TILE_ISA "avx2"
#define JAXCPS_VEC_BYTES 32  // one ymm
// CPO keeps 64 output channels (4 vectors of 16, 8 ymm registers) per pixel.
#define JAXCPS_CPO_PAIR_MAX_O_VECS 2  // two pixels: 8 ymm of accumulators
#define JAXCPS_CPO_MAX_O_VECS 4
// 64 channels: two non-zeros per step (3-5% faster at 50-70% zeros on Zen 2; with fewer
// registers equal, or 2-3% slower on the pairs' one-sided rows at 90% zeros).
#define JAXCPS_CPO_SUM_TWO_MIN_REGS 8
// Sparse direct: 3x2 pixels x 1 vector of output channels: 12 ymm of accumulators, 2 of
// weights, 1 broadcast input (2x2 took 18-34% more time at 0, 50 and 90% zeros on Zen 2).
// Tiles of 4 such vectors share each block's channel lists (on Zen 2, one thread, against
// tiles of 1: 7-20% faster at 50-90% zeros on 7x7 to 56x56 layers; at 0% zeros 6% slower on
// VGG-16 conv4_2 until a full union got its own loop, then about equal: 41.9 against 42.0-42.2
// ms, in separate runs).
#define JAXCPS_DIRECT_ROWS 3
#define JAXCPS_DIRECT_COLS 2
#define JAXCPS_DIRECT_MAX_O_VECS 4
#define JAXCPS_DIRECT_BLOCK_VECS 1
#include "sparse/tile_kernels_impl.h"
}  // namespace avx2
}  // namespace jaxcps
