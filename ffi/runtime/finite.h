// NaN and infinity in float data: the one test (on the bits: all exponent bits set), and the
// scan of rows of weights that the kernels and the FFI handler use.
#ifndef JAXCPS_RUNTIME_FINITE_H_
#define JAXCPS_RUNTIME_FINITE_H_

#include <cstdint>
#include <cstring>

// Loops that scan or copy floats are cloned per instruction set on x86-64 Linux, since the
// SSE2 baseline alone runs them 3-10x slower (the loader picks a clone through glibc's ifunc).
// A cloned function must stay file-local, called through a plain exported wrapper: clang
// before 18 cannot call a target_clones function defined in another file.
#if defined(__x86_64__) && defined(__linux__)
#define JAXCPS_CLONED_PER_ISA __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JAXCPS_CLONED_PER_ISA
#endif

namespace jaxcps {

// 1 if v is NaN or infinite, else 0. Integer ops without branches, so loops over it vectorize.
inline uint32_t NonFiniteBit(float v) {
  constexpr uint32_t kExponent = 0x7f800000u;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return static_cast<uint32_t>((bits & kExponent) == kExponent);
}

// True if any of `rows` rows of `len` floats, `stride` floats apart from `first`, is NaN or
// infinite.
[[nodiscard]] bool RowsNonFinite(const float* first, int64_t rows, int64_t stride, int64_t len);

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_FINITE_H_
