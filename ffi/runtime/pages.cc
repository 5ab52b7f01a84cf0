#include "runtime/pages.h"

#include <atomic>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace jaxcps {

namespace {
std::atomic<uint64_t> advice_count{0};
}  // namespace

void AdviseHugePagesIfFresh(void* data, uint64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t{1} << 21;
  if (data == nullptr || bytes < kMinHugePageAdviceBytes) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (begin + bytes) & ~(kHugePage - 1);
  // One small page tells fresh memory from memory in use (mincore reports anonymous pages).
  unsigned char resident = 0;
  const long page = sysconf(_SC_PAGESIZE);
  if (end <= first || page <= 0 ||
      mincore(reinterpret_cast<void*>(first), static_cast<size_t>(page), &resident) != 0 ||
      (resident & 1) != 0) {
    return;
  }
  if (madvise(reinterpret_cast<void*>(first), end - first, MADV_HUGEPAGE) == 0) {
    advice_count.fetch_add(1, std::memory_order_relaxed);
  }
#else
  (void)data;
  (void)bytes;
#endif
}

uint64_t HugePageAdviceCount() { return advice_count.load(std::memory_order_relaxed); }

}  // namespace jaxcps
