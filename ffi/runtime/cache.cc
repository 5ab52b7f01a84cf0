#include "runtime/cache.h"

#include <unistd.h>

namespace jaxcps {

namespace {

constexpr int64_t kDefaultL2Bytes = int64_t{512} << 10;
constexpr int64_t kDefaultL1Bytes = int64_t{32} << 10;

int64_t QueryL2CacheBytes() {
#ifdef _SC_LEVEL2_CACHE_SIZE
  const long bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);  // glibc: from cpuid or sysfs; else 0 or -1
  if (bytes > 0) return bytes;
#endif
  return kDefaultL2Bytes;
}

int64_t QueryL1DataCacheBytes() {
#ifdef _SC_LEVEL1_DCACHE_SIZE
  const long bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE);
  if (bytes > 0) return bytes;
#endif
  return kDefaultL1Bytes;
}

}  // namespace

int64_t L1DataCacheBytes() {
  static const int64_t bytes = QueryL1DataCacheBytes();
  return bytes;
}

int64_t L2CacheBytes() {
  static const int64_t bytes = QueryL2CacheBytes();
  return bytes;
}

}  // namespace jaxcps
