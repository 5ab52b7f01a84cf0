// CPO/CPS tile kernels built for the avx2 instruction set (flags set in CMakeLists.txt).
// Generated from one template, sparse_kernels_impl.h; edit that file, not this one.
#include "sparse_kernels.h"

namespace jaxcps {
namespace avx2 {
#define JAXCPS_ISA_NAME "avx2"
#include "sparse_kernels_impl.h"
#undef JAXCPS_ISA_NAME
}  // namespace avx2
}  // namespace jaxcps
