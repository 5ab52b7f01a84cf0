// Run-time choice of the instruction set for the sparse tile kernels: the best one this CPU
// supports, unless JAXCPS_ISA (scalar, avx2, avx512) or SetSparseIsa() asks for another.
#ifndef JAXCPS_RUNTIME_ISA_H_
#define JAXCPS_RUNTIME_ISA_H_

#include <string>
#include <vector>

#include "sparse/tile_kernels.h"

namespace jaxcps {

const SparseKernelSet& ActiveSparseKernels();
// Instruction sets this CPU can run, best last ("scalar" is always there).
std::vector<std::string> SupportedIsas();
// Forces an instruction set; returns an error message if it is unknown or unsupported here.
std::string SetSparseIsa(const std::string& isa);

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_ISA_H_
