// The list of kernels (kernels.inc) as data, and the one check every caller makes first.
#include "kernels/kernel.h"

namespace jaxcps {

const std::vector<const Kernel*>& AllKernels() {
  static const std::vector<const Kernel*> all = {
#define JAXCPS_KERNEL(Name) &k##Name,
#include "kernels/kernels.inc"
#undef JAXCPS_KERNEL
  };
  return all;
}

const Kernel* FindKernel(const std::string& name) {
  for (const Kernel* kernel : AllKernels()) {
    if (name == kernel->name) return kernel;
  }
  return nullptr;
}

std::string CheckKernel(const Kernel& kernel, ConvGeometry* g) {
  std::string err = g->Derive();
  if (err.empty()) err = kernel.supports(*g);
  return err;
}

}  // namespace jaxcps
