// The packing of weight rows for the register-blocked sparse kernels (tile_driver.h).
#include "kernels/tile_driver.h"

#include "runtime/finite.h"

namespace jaxcps {

#if defined(__x86_64__) && defined(__linux__)
#define JAXCPS_CLONED_PER_ISA __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define JAXCPS_CLONED_PER_ISA
#endif

// Cloned per ISA on x86-64 Linux (as the handler's weight scan is): the copy and the finiteness
// test vectorize to 16 floats at a time with AVX-512, where the SSE2 baseline does 4.
JAXCPS_CLONED_PER_ISA
bool PackWeightRows(const ConvGeometry& g, const float* w, int64_t c_first, int64_t count,
                    int64_t rows_per_tap, int64_t o_first, int64_t o_len, int64_t o_pad,
                    const uint64_t* live, float* dst) {
  uint32_t bad = 0;
  for (int64_t tap = 0; tap < g.kh * g.kw; ++tap) {
    for (int64_t c = 0; c < count; ++c) {
      const float* __restrict src = w + (tap * g.ci + c_first + c) * g.o + o_first;
      if (live != nullptr && (live[c / kMaskChannels] >> (c % kMaskChannels) & 1) == 0) continue;
      float* __restrict row = dst + (tap * rows_per_tap + c) * o_pad;
      for (int64_t o = 0; o < o_len; ++o) {
        bad |= NonFiniteBit(src[o]);
        row[o] = src[o];
      }
      for (int64_t o = o_len; o < o_pad; ++o) row[o] = 0.0f;
    }
  }
  return bad != 0;
}

JAXCPS_CLONED_PER_ISA
bool RowsNonFinite(const float* first, int64_t rows, int64_t stride, int64_t len) {
  uint32_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < len; ++i) bad |= NonFiniteBit(first[r * stride + i]);
  }
  return bad != 0;
}

}  // namespace jaxcps
