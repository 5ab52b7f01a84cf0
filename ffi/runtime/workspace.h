// Workspace: an aligned, uninitialised float/index buffer whose allocation failure is an
// error message, not an exception or a crash. Sizes are checked against a cap first.
#ifndef JAXCPS_RUNTIME_WORKSPACE_H_
#define JAXCPS_RUNTIME_WORKSPACE_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace jaxcps {

// Largest workspace one allocation may take: the smaller of 64 GiB and the machine's physical
// memory, or JAXCPS_MAX_WORKSPACE_BYTES when set (tests lower it to reach the limit with small
// inputs). Beyond it we refuse up front: Linux over-commits, so a larger allocation could
// succeed and the process be killed later, when its pages are touched. Read once (workspace.cc).
uint64_t MaxWorkspaceBytes();

// Returns count * elem_size, or UINT64_MAX if the product overflows.
inline uint64_t CheckedBytes(uint64_t count, uint64_t elem_size) {
  if (elem_size != 0 && count > UINT64_MAX / elem_size) return UINT64_MAX;
  return count * elem_size;
}

// Large blocks that kernels allocate on every call are kept for the next call: a fresh block
// costs a page fault per 4 KiB page when first touched (glibc returns blocks over 32 MiB to
// the OS on every free; measured here at 2-9 us a fault, e.g. 18 ms for 40 MiB). Blocks of at
// least kMinCachedBytes go back to a process-wide cache of at most MaxCachedBytes() and are
// reused for a request of between half and all of their size. Thread-safe. (The threshold
// was 1 MiB, and CPO's 0.4-0.8 MiB blocks on a 56x56x64 input faulted in their pages on every
// call: 3-4% of its time at 90% zeros.)
constexpr uint64_t kMinCachedBytes = uint64_t{1} << 17;
// The cache's cap: the smaller of 512 MiB and a sixteenth of physical memory.
uint64_t MaxCachedBytes();
// A 64-byte aligned block of at least `bytes` (from the cache when one fits), or nullptr;
// *capacity receives its real size, to give back with ReleaseBlock.
void* AcquireBlock(uint64_t bytes, uint64_t* capacity);
void ReleaseBlock(void* block, uint64_t capacity);
// Bytes held by the cache now (for tests).
uint64_t CachedBytes();

template <typename T>
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { Release(); }

  // Allocates room for count elements. Returns an empty string on success.
  std::string Allocate(uint64_t count, const char* what) {
    Release();
    const uint64_t bytes = CheckedBytes(count, sizeof(T));
    if (bytes > MaxWorkspaceBytes()) {
      return std::string(what) + " needs " + std::to_string(bytes) +
             " bytes, more than the workspace limit of " + std::to_string(MaxWorkspaceBytes());
    }
    if (bytes == 0) return {};
    data_ = static_cast<T*>(AcquireBlock(bytes, &capacity_));
    if (data_ == nullptr)
      return std::string("cannot allocate ") + std::to_string(bytes) + " bytes for " + what;
    return {};
  }
  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  void Release() {
    if (data_ != nullptr) ReleaseBlock(data_, capacity_);
    data_ = nullptr;
    capacity_ = 0;
  }

  T* data_ = nullptr;
  uint64_t capacity_ = 0;
};

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_WORKSPACE_H_
