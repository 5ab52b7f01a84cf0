// The workspace size limit (see workspace.h).
#include "runtime/workspace.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace jaxcps {

namespace {

uint64_t DefaultLimit() {
  uint64_t limit = uint64_t{64} << 30;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    limit = std::min(limit, CheckedBytes(static_cast<uint64_t>(pages),
                                         static_cast<uint64_t>(page_size)));
  }
  return limit;
}

// JAXCPS_MAX_WORKSPACE_BYTES as a positive integer; anything else keeps the default.
uint64_t ReadLimit() {
  const char* env = std::getenv("JAXCPS_MAX_WORKSPACE_BYTES");
  if (env == nullptr || *env == '\0') return DefaultLimit();
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = std::strtoull(env, &end, 10);
  if (errno != 0 || *end != '\0' || value == 0 || env[0] == '-') return DefaultLimit();
  return value;
}

}  // namespace

uint64_t MaxWorkspaceBytes() {
  static const uint64_t limit = ReadLimit();
  return limit;
}

}  // namespace jaxcps
