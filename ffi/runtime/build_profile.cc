// Counters behind build_profile.h.
#include "runtime/build_profile.h"

#include <atomic>

namespace jaxcps {

namespace {
std::atomic<bool> enabled{false};
std::atomic<int64_t> builds{0};
std::atomic<int64_t> nanoseconds{0};
}  // namespace

void EnableBuildProfile(bool on) { enabled.store(on, std::memory_order_relaxed); }
bool BuildProfileEnabled() { return enabled.load(std::memory_order_relaxed); }

void AddBuildTime(int64_t ns) {
  builds.fetch_add(1, std::memory_order_relaxed);
  nanoseconds.fetch_add(ns, std::memory_order_relaxed);
}

BuildProfileTotals TakeBuildProfile() {
  BuildProfileTotals totals;
  totals.builds = builds.exchange(0);
  totals.seconds = static_cast<double>(nanoseconds.exchange(0)) * 1e-9;
  return totals;
}

}  // namespace jaxcps
