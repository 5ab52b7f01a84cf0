// The packing of weight rows and the prepared layout of the register-blocked sparse kernels
// (tile_driver.h).
#include "kernels/tile_driver.h"

#include "kernels/kernel.h"
#include "runtime/finite.h"

namespace jaxcps {

namespace {

// Rows that PackWeightRows prefetches ahead of the one it copies. A row is o_len floats of a
// source row of g.o: with many output channels the rows are far apart, a stride the hardware
// prefetcher does not follow, and the copy waits on each (docs/design.md section 3.2: packing
// 7x7x512->512's weights after an XLA call took 1.84-2.47 ms of CPU without, 1.05-1.18 with
// the prefetch; the first kPackPrefetchRows rows of a call are not prefetched). Only where
// source rows are at least kPackPrefetchStride bytes apart: nearer rows the hardware follows,
// and the prefetches cost 1-5% (one thread, 32 output channels: rows 128 bytes apart).
constexpr int64_t kPackPrefetchRows = 8;
constexpr int64_t kPackPrefetchStride = 2048;

// Prefetches the cache lines of floats [p, p + count), one per 64 bytes and the last.
inline void PrefetchFloats(const float* p, int64_t count) {
  if (count <= 0) return;
  const char* first = reinterpret_cast<const char*>(p);
  const int64_t bytes = count * static_cast<int64_t>(sizeof(float));
  for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(first + offset, 0, 3);
  __builtin_prefetch(first + bytes - 1, 0, 3);
}

// Cloned per ISA (runtime/finite.h): the copy and the finiteness test run 16 floats at a time
// with AVX-512, where the SSE2 baseline does 4.
JAXCPS_CLONED_PER_ISA
bool PackWeightRowsCloned(const ConvGeometry& g, const float* w, int64_t c_first, int64_t count,
                          int64_t rows_per_tap, int64_t o_first, int64_t o_len, int64_t o_pad,
                          const uint64_t* live, float* dst) {
  uint32_t bad = 0;
  const int64_t taps = g.kh * g.kw;
  // The row kPackPrefetchRows ahead in packing order, as (tap, channel); none if rows are near.
  const bool prefetch = g.o * static_cast<int64_t>(sizeof(float)) >= kPackPrefetchStride;
  int64_t ahead_tap = prefetch ? 0 : taps, ahead_c = kPackPrefetchRows;
  while (ahead_c >= count && ahead_tap < taps) ahead_c -= count, ++ahead_tap;
  for (int64_t tap = 0; tap < taps; ++tap) {
    for (int64_t c = 0; c < count; ++c) {
      if (ahead_tap < taps) {
        if (live == nullptr || ChannelLive(live, ahead_c)) {
          PrefetchFloats(w + (ahead_tap * g.ci + c_first + ahead_c) * g.o + o_first, o_len);
        }
        if (++ahead_c == count) ahead_c = 0, ++ahead_tap;
      }
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

// Bumped whenever the layout of prepared weights changes, so that weights prepared by another
// version (an exported program) are never misread.
constexpr int64_t kPreparedFormat = 1;

int64_t RoundUpToVector(int64_t n) { return (n + kVectorLanes - 1) / kVectorLanes * kVectorLanes; }

}  // namespace

bool PackWeightRows(const ConvGeometry& g, const float* w, int64_t c_first, int64_t count,
                    int64_t rows_per_tap, int64_t o_first, int64_t o_len, int64_t o_pad,
                    const uint64_t* live, float* dst) {
  return PackWeightRowsCloned(g, w, c_first, count, rows_per_tap, o_first, o_len, o_pad, live, dst);
}

bool PackTile(const ConvGeometry& g, const float* w, int64_t grp, const OutputBlock& block,
              const uint64_t* live, float* dst) {
  return PackWeightRows(g, w, 0, g.ci, g.ci, grp * g.OutPerGroup() + block.offset, block.length,
                        block.vecs * kVectorLanes, live, dst);
}

int64_t PreparedTilesFloats(const ConvGeometry& g) {
  return g.groups * g.kh * g.kw * g.ci * RoundUpToVector(g.OutPerGroup());
}

int64_t PreparedTilesLayout(int64_t max_o_vecs) {
  return kPreparedFormat << 16 | max_o_vecs * kVectorLanes;
}

// The groups before grp (each all its blocks, padded to whole vectors), then the blocks before
// `block` in its group (all full width).
int64_t PreparedTileOffset(const ConvGeometry& g, int64_t grp, const OutputBlock& block) {
  return g.kh * g.kw * g.ci * (grp * RoundUpToVector(g.OutPerGroup()) + block.offset);
}

bool PrepareTiles(const ConvGeometry& g, const float* w, int64_t max_o_vecs, float* dst) {
  const std::vector<OutputBlock> blocks = SplitOutputChannels(g.OutPerGroup(), max_o_vecs);
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    for (const OutputBlock& block : blocks) {
      if (PackTile(g, w, grp, block, nullptr, dst + PreparedTileOffset(g, grp, block))) {
        return false;
      }
    }
  }
  return true;
}

std::string CheckPreparedTiles(const ConvGeometry& g, int64_t count, int64_t layout,
                               int64_t max_o_vecs) {
  if (layout != PreparedTilesLayout(max_o_vecs)) return kStalePreparedWeights;
  const int64_t expected = PreparedTilesFloats(g);
  if (count == expected) return {};
  return "prepared weights of " + std::to_string(count) + " floats, the convolution needs " +
         std::to_string(expected);
}

}  // namespace jaxcps
