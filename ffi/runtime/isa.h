// Run-time choice of the instruction set for the sparse tile kernels: the best one this CPU
// supports, unless JAXCPS_ISA or SetSparseIsa() asks for another. Which sets exist depends on
// the target architecture: scalar (the x86-64 baseline), avx2 and avx512 on x86-64; neon on
// AArch64; scalar (portable C++) elsewhere.
#ifndef JAXCPS_RUNTIME_ISA_H_
#define JAXCPS_RUNTIME_ISA_H_

#include <string>
#include <vector>

#include "sparse/tile_kernels.h"

namespace jaxcps {

const SparseKernelSet& ActiveSparseKernels();
// Instruction sets compiled for this architecture, portable first.
std::vector<std::string> CompiledIsas();
// Those this CPU can run, best last (the portable one is always there).
std::vector<std::string> SupportedIsas();
// Forces an instruction set; returns an error message if it is unknown or unsupported here.
std::string SetSparseIsa(const std::string& isa);

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_ISA_H_
