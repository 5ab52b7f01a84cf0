// CPO/CPS tile kernels built for the scalar instruction set (flags set in CMakeLists.txt).
// Generated from one template, sparse_kernels_impl.h; edit that file, not this one.
#include "sparse_kernels.h"

namespace jaxcps {
namespace scalar {
#define JAXCPS_ISA_NAME "scalar"
#include "sparse_kernels_impl.h"
#undef JAXCPS_ISA_NAME
}  // namespace scalar
}  // namespace jaxcps
