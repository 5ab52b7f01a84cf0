// Optional timing of the compressed-form builds that CPO/CPS calls make, for the benchmark's
// build-share column (jaxcps._ffi.build_profile). Off by default, when it costs one relaxed
// atomic load per build.
#ifndef JAXCPS_RUNTIME_BUILD_PROFILE_H_
#define JAXCPS_RUNTIME_BUILD_PROFILE_H_

#include <chrono>
#include <cstdint>

namespace jaxcps {

void EnableBuildProfile(bool on);
bool BuildProfileEnabled();
void AddBuildTime(int64_t nanoseconds);

struct BuildProfileTotals {
  int64_t builds = 0;
  double seconds = 0.0;
};
// The totals since the last call, which resets them.
BuildProfileTotals TakeBuildProfile();

// Adds the lifetime of this scope to the totals when profiling is on.
class BuildProfileScope {
 public:
  BuildProfileScope() : on_(BuildProfileEnabled()) {
    if (on_) start_ = std::chrono::steady_clock::now();
  }
  ~BuildProfileScope() {
    if (on_) {
      AddBuildTime(std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::steady_clock::now() - start_)
                       .count());
    }
  }
  BuildProfileScope(const BuildProfileScope&) = delete;
  BuildProfileScope& operator=(const BuildProfileScope&) = delete;

 private:
  bool on_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_BUILD_PROFILE_H_
