// The packing of weight rows for the register-blocked sparse kernels (tile_driver.h).
#include "kernels/tile_driver.h"

#include "runtime/finite.h"

namespace jaxcps {

namespace {

// Cloned per ISA (runtime/finite.h): the copy and the finiteness test run 16 floats at a time
// with AVX-512, where the SSE2 baseline does 4.
JAXCPS_CLONED_PER_ISA
bool PackWeightRowsCloned(const ConvGeometry& g, const float* w, int64_t c_first, int64_t count,
                          int64_t rows_per_tap, int64_t o_first, int64_t o_len, int64_t o_pad,
                          const uint64_t* live, float* dst) {
  uint32_t bad = 0;
  for (int64_t tap = 0; tap < g.kh * g.kw; ++tap) {
    for (int64_t c = 0; c < count; ++c) {
      if (live != nullptr && !ChannelLive(live, c)) continue;
      const float* __restrict src = w + (tap * g.ci + c_first + c) * g.o + o_first;
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

}  // namespace

bool PackWeightRows(const ConvGeometry& g, const float* w, int64_t c_first, int64_t count,
                    int64_t rows_per_tap, int64_t o_first, int64_t o_len, int64_t o_pad,
                    const uint64_t* live, float* dst) {
  return PackWeightRowsCloned(g, w, c_first, count, rows_per_tap, o_first, o_len, o_pad, live, dst);
}

}  // namespace jaxcps
