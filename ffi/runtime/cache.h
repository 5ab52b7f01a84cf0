// The CPU's cache sizes, for kernels that size their blocking to them.
#ifndef JAXCPS_RUNTIME_CACHE_H_
#define JAXCPS_RUNTIME_CACHE_H_

#include <cstdint>

namespace jaxcps {

// Bytes of the level-2 cache of one core, as the system reports it (read once), or 512 KiB
// where it reports none.
int64_t L2CacheBytes();

// Bytes of the level-1 data cache of one core, as the system reports it (read once), or 32 KiB
// where it reports none.
int64_t L1DataCacheBytes();

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_CACHE_H_
