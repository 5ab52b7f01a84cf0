// NaN and infinity in float data, tested on the bits: all exponent bits set. Integer ops
// without branches, so loops over it vectorize.
#ifndef JAXCPS_RUNTIME_FINITE_H_
#define JAXCPS_RUNTIME_FINITE_H_

#include <cstdint>
#include <cstring>

namespace jaxcps {

// 1 if v is NaN or infinite, else 0.
inline uint32_t NonFiniteBit(float v) {
  constexpr uint32_t kExponent = 0x7f800000u;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return static_cast<uint32_t>((bits & kExponent) == kExponent);
}

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_FINITE_H_
