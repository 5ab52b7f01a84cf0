// Output buffers fresh from the operating system. XLA allocates a call's result anew, and
// glibc maps every block over 32 MiB afresh (and unmaps it when freed), so a large output is
// often memory that no one has touched: each 4 KiB page then faults when a kernel first
// writes it, one exception, zeroing and accounting at a time.
#ifndef JAXCPS_RUNTIME_PAGES_H_
#define JAXCPS_RUNTIME_PAGES_H_

#include <cstdint>

namespace jaxcps {

// If [data, data + bytes) spans a whole 2 MiB page whose memory is not yet backed (its first
// 4 KiB page is not resident), asks Linux to back the whole 2 MiB pages of the range with
// transparent huge pages as they are written (madvise MADV_HUGEPAGE): one fault per 2 MiB
// instead of 512. A hint only: contents are unchanged and refusals are ignored. Memory
// already in use (a reused heap block) is left alone. Does nothing on other systems.
// Returns true if the advice was given.
bool AdviseHugePagesIfFresh(void* data, uint64_t bytes);

// How many times AdviseHugePagesIfFresh has given its advice in this process (for tests).
uint64_t HugePageAdviceCount();

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_PAGES_H_
