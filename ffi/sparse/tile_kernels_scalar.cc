// CPO/CPS kernels built for the scalar instruction set (flags set in CMakeLists.txt).
// The code is the template tile_kernels_impl.h; edit that file, not this one.
#include "sparse/tile_kernels.h"

namespace jaxcps {
namespace scalar {
#include "sparse/tile_kernels_impl.h"

// CPO keeps 32 output channels (2 vectors of 16) in registers per pixel.
extern const SparseKernelSet kKernels = {"scalar", 32, CpoBand, CpsTile,
                                      BuildCpoRow, BuildCpsRow};
}  // namespace scalar
}  // namespace jaxcps
