// Huge pages for an output that is fresh from the operating system (docs/design.md, section
// 1.5): its first writes would otherwise fault in one 4 KiB page at a time.
#ifndef JAXCPS_RUNTIME_PAGES_H_
#define JAXCPS_RUNTIME_PAGES_H_

#include <cstdint>

namespace jaxcps {

// Buffers at least this large are asked about: glibc maps every block over 32 MiB afresh and
// unmaps it when freed, so such a buffer is a mapping of its own, not heap memory shared with
// other allocations.
constexpr uint64_t kMinHugePageAdviceBytes = uint64_t{32} << 20;

// If [data, data + bytes) is at least kMinHugePageAdviceBytes and not yet backed (the first
// 4 KiB page of its first whole 2 MiB page is not resident), asks Linux to back its whole
// 2 MiB pages with transparent huge pages as they are written (madvise MADV_HUGEPAGE): one
// fault per 2 MiB instead of 512. A hint only: no value changes, a refusal is ignored, and
// memory already written is left alone. 2 MiB is the huge page of x86-64 and of 4 KiB-page
// AArch64; elsewhere the hint only costs a system call. Does nothing on other systems.
void AdviseHugePagesIfFresh(void* data, uint64_t bytes);

// How many times AdviseHugePagesIfFresh has given its advice in this process (for tests).
uint64_t HugePageAdviceCount();

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_PAGES_H_
