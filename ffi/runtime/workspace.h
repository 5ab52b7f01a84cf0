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

template <typename T>
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { std::free(data_); }

  // Allocates room for count elements. Returns an empty string on success.
  std::string Allocate(uint64_t count, const char* what) {
    std::free(data_);
    data_ = nullptr;
    const uint64_t bytes = CheckedBytes(count, sizeof(T));
    if (bytes > MaxWorkspaceBytes()) {
      return std::string(what) + " needs " + std::to_string(bytes) +
             " bytes, more than the workspace limit of " + std::to_string(MaxWorkspaceBytes());
    }
    if (bytes == 0) return {};
    const uint64_t rounded = (bytes + 63) / 64 * 64;
    data_ = static_cast<T*>(std::aligned_alloc(64, rounded));
    if (data_ == nullptr) return std::string("cannot allocate ") + std::to_string(bytes) +
                                 " bytes for " + what;
    return {};
  }
  T* data() { return data_; }
  const T* data() const { return data_; }

 private:
  T* data_ = nullptr;
};

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_WORKSPACE_H_
