// CPO, CPS and sparse-direct kernels built for the scalar instruction set (flags set in
// CMakeLists.txt). The code is the template tile_kernels_impl.h; edit that file, not this one.
#if defined(__x86_64__)
#include <immintrin.h>  // the builders' intrinsic paths, in a -march=native build
#endif

#include <memory>
#include <type_traits>

#include "sparse/tile_kernels.h"

namespace jaxcps {
namespace scalar {
#define JAXCPS_TILE_ISA "scalar"
// One xmm register (SSE2, the x86-64 baseline); elsewhere the compiler lowers it as it can.
#define JAXCPS_VEC_BYTES 16
// CPO keeps 32 output channels (2 vectors of 16, 8 SSE registers) per pixel.
#define JAXCPS_CPO_PAIR_MAX_O_VECS 1  // two pixels: 8 xmm of accumulators
#define JAXCPS_CPO_MAX_O_VECS 2
// Sparse direct: 1x2 pixels x 1 vector of output channels: 8 xmm of accumulators.
#define JAXCPS_DIRECT_ROWS 1
#define JAXCPS_DIRECT_COLS 2
#define JAXCPS_DIRECT_MAX_O_VECS 1
#define JAXCPS_DIRECT_BLOCK_VECS 1
#include "sparse/tile_kernels_impl.h"
}  // namespace scalar
}  // namespace jaxcps
