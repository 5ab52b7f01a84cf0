// CPO/CPS kernels built for the avx2 instruction set (flags set in CMakeLists.txt).
// The code is the template tile_kernels_impl.h; edit that file, not this one.
#include "sparse/tile_kernels.h"

namespace jaxcps {
namespace avx2 {
#include "sparse/tile_kernels_impl.h"

// CPO keeps 64 output channels (4 vectors of 16) in registers per pixel.
extern const SparseKernelSet kKernels = {"avx2", 64, CpoBand, CpsTile,
                                      BuildCpoRow, BuildCpsRow};
}  // namespace avx2
}  // namespace jaxcps
