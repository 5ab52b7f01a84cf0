// Reads the CPU's features once and picks the sparse kernel set (see isa.h).
#include "runtime/isa.h"

#include <atomic>
#include <cstdlib>

namespace jaxcps {

namespace {

const SparseKernelSet* const kAll[] = {&scalar::kKernels, &avx2::kKernels, &avx512::kKernels};

bool CpuSupports(const SparseKernelSet* set) {
  if (set == &avx512::kKernels) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("fma");
  }
  if (set == &avx2::kKernels) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return true;
}

const SparseKernelSet* Find(const std::string& name) {
  for (const SparseKernelSet* set : kAll) {
    if (name == set->isa) return set;
  }
  return nullptr;
}

const SparseKernelSet* Best() {
  const SparseKernelSet* best = &scalar::kKernels;
  for (const SparseKernelSet* set : kAll) {
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

std::vector<std::string> SupportedIsas() {
  std::vector<std::string> names;
  for (const SparseKernelSet* set : kAll) {
    if (CpuSupports(set)) names.emplace_back(set->isa);
  }
  return names;
}

std::string SetSparseIsa(const std::string& isa) {
  const SparseKernelSet* set = Find(isa);
  if (set == nullptr) return "unknown instruction set '" + isa + "' (scalar, avx2, avx512)";
  if (!CpuSupports(set)) return "this CPU does not support '" + isa + "'";
  Active().store(set, std::memory_order_release);
  return {};
}

}  // namespace jaxcps
