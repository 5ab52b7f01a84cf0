// Reads the CPU's features once and picks the sparse kernel set (see isa.h). The sets, and how
// to ask the CPU about them, are per architecture: ffi/CMakeLists.txt compiles the target's
// tile_kernels_<isa>.cc files and defines the matching JAXCPS_ARCH_*.
#include "runtime/isa.h"

#include <atomic>
#include <cstdlib>

namespace jaxcps {

namespace {

#if defined(JAXCPS_ARCH_X86_64)

const SparseKernelSet* const kCompiled[] = {&scalar::kKernels, &avx2::kKernels, &avx512::kKernels};

bool CpuSupports(const SparseKernelSet* set) {
  if (set == &avx512::kKernels) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
  }
  if (set == &avx2::kKernels) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  }
  return true;
}

#elif defined(JAXCPS_ARCH_AARCH64)

// NEON is part of the AArch64 base architecture: every CPU runs it.
const SparseKernelSet* const kCompiled[] = {&neon::kKernels};

bool CpuSupports(const SparseKernelSet*) { return true; }

#else

const SparseKernelSet* const kCompiled[] = {&scalar::kKernels};

bool CpuSupports(const SparseKernelSet*) { return true; }

#endif

const SparseKernelSet* Find(const std::string& name) {
  for (const SparseKernelSet* set : kCompiled) {
    if (name == set->isa) return set;
  }
  return nullptr;
}

const SparseKernelSet* Best() {
  const SparseKernelSet* best = kCompiled[0];
  for (const SparseKernelSet* set : kCompiled) {
    if (CpuSupports(set)) best = set;
  }
  return best;
}

const SparseKernelSet* Initial() {
  if (const char* env = std::getenv("JAXCPS_ISA")) {
    const SparseKernelSet* set = Find(env);
    if (set != nullptr && CpuSupports(set)) return set;
  }
  return Best();
}

std::atomic<const SparseKernelSet*>& Active() {
  static std::atomic<const SparseKernelSet*> active{Initial()};
  return active;
}

}  // namespace

const SparseKernelSet& ActiveSparseKernels() { return *Active().load(std::memory_order_acquire); }

std::vector<std::string> CompiledIsas() {
  std::vector<std::string> names;
  for (const SparseKernelSet* set : kCompiled) names.emplace_back(set->isa);
  return names;
}

std::vector<std::string> SupportedIsas() {
  std::vector<std::string> names;
  for (const SparseKernelSet* set : kCompiled) {
    if (CpuSupports(set)) names.emplace_back(set->isa);
  }
  return names;
}

std::string SetSparseIsa(const std::string& isa) {
  const SparseKernelSet* set = Find(isa);
  if (set == nullptr) {
    std::string known;
    for (const std::string& name : CompiledIsas()) known += (known.empty() ? "" : ", ") + name;
    return "unknown instruction set '" + isa + "' (this build has " + known + ")";
  }
  if (!CpuSupports(set)) return "this CPU does not support '" + isa + "'";
  Active().store(set, std::memory_order_release);
  return {};
}

}  // namespace jaxcps
