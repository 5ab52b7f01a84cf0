// CPO, CPS and sparse-direct kernels built for AArch64, whose base instruction set includes NEON
// (no flags needed; ffi/CMakeLists.txt compiles this file instead of the x86 variants). The code is
// the template tile_kernels_impl.h; edit that file, not this one.
#include <memory>
#include <type_traits>

#include "sparse/tile_kernels.h"

namespace jaxcps {
namespace neon {
#define JAXCPS_TILE_ISA "neon"
#define JAXCPS_VEC_BYTES 16  // one NEON register
// CPO keeps 64 output channels (4 vectors of 16, 16 of the 32 NEON registers) per pixel.
#define JAXCPS_CPO_PAIR_MAX_O_VECS 2  // two pixels: 16 NEON registers of accumulators
#define JAXCPS_CPO_MAX_O_VECS 4
// Sparse direct: 2x2 pixels x 1 vector of output channels: 16 NEON registers of accumulators.
#define JAXCPS_DIRECT_ROWS 2
#define JAXCPS_DIRECT_COLS 2
#define JAXCPS_DIRECT_MAX_O_VECS 1
#define JAXCPS_DIRECT_BLOCK_VECS 1
#include "sparse/tile_kernels_impl.h"
}  // namespace neon
}  // namespace jaxcps
