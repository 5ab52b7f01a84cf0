// CPO/CPS kernels built for the avx512 instruction set (flags set in CMakeLists.txt).
// The code is the template tile_kernels_impl.h; edit that file, not this one.
#include <immintrin.h>

#include "sparse/tile_kernels.h"

namespace jaxcps {
namespace avx512 {
#include "sparse/tile_kernels_impl.h"

// CPO keeps 128 output channels (8 vectors of 16) in registers per pixel.
extern const SparseKernelSet kKernels = {"avx512", 128, CpoBand, CpsTile,
                                      BuildCpoRow, BuildCpsRow};
}  // namespace avx512
}  // namespace jaxcps
