// CPO, CPS and sparse-direct kernels built for the avx512 instruction set (flags set in
// CMakeLists.txt). The code is the template tile_kernels_impl.h; edit that file, not this one.
#include <immintrin.h>

#include <memory>
#include <type_traits>

#include "sparse/tile_kernels.h"

namespace jaxcps {
namespace avx512 {
#define JAXCPS_TILE_ISA "avx512"
#define JAXCPS_VEC_BYTES 64  // one zmm
// CPO keeps 128 output channels (8 vectors of 16, 8 zmm registers) per pixel.
#define JAXCPS_CPO_PAIR_MAX_O_VECS 8  // two pixels: 16 zmm of accumulators
#define JAXCPS_CPO_MAX_O_VECS 8
// Sparse direct: 3x2 pixels x 4 vectors of output channels: 24 zmm of accumulators, 4 of
// weights, 1 broadcast input. (Measured against 2x2: faster at every zero fraction from 0 to
// 90%, although the union of six pixels' masks holds more zeros than that of four.)
#define JAXCPS_DIRECT_ROWS 3
#define JAXCPS_DIRECT_COLS 2
#define JAXCPS_DIRECT_MAX_O_VECS 4
#define JAXCPS_DIRECT_BLOCK_VECS 4
#include "sparse/tile_kernels_impl.h"
}  // namespace avx512
}  // namespace jaxcps
