// What the drivers of the register-blocked sparse kernels (kernels/cpo.cc,
// kernels/sparse_direct.cc) share: the split of output channels into register tiles, the
// packing of a tile's weight rows, the layout of weights prepared once, and the window their
// jobs (sparse/tile_kernels.h) carry.
// Included by driver files only, never by the per-ISA tile kernels.
#ifndef JAXCPS_KERNELS_TILE_DRIVER_H_
#define JAXCPS_KERNELS_TILE_DRIVER_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "geometry.h"
#include "kernels/kernel.h"
#include "runtime/finite.h"
#include "runtime/isa.h"
#include "runtime/parallel.h"
#include "sparse/tile_kernels.h"

namespace jaxcps {

struct OutputBlock {
  int64_t offset, length, vecs;  // within a group's output channels; vecs = ceil(length / 16)
};

// Splits og output channels into blocks of max_vecs vectors; the last may be narrower.
inline std::vector<OutputBlock> SplitOutputChannels(int64_t og, int64_t max_vecs) {
  std::vector<OutputBlock> blocks;
  const int64_t width = max_vecs * kVectorLanes;
  for (int64_t offset = 0; offset < og; offset += width) {
    const int64_t length = std::min(width, og - offset);
    blocks.push_back({offset, length, (length + kVectorLanes - 1) / kVectorLanes});
  }
  return blocks;
}

// True if channel c's bit is set in `live` (one bit per channel, 64 to a word).
inline bool ChannelLive(const uint64_t* live, int64_t c) {
  return (live[c / kMaskChannels] >> (c % kMaskChannels) & 1) != 0;
}

// Packs W[kh][kw][c_first + c][o_first + o] for c < count, o < o_len into
// dst[(kh*KW + kw)*rows_per_tap + c][o_pad] (o_len <= o_pad, the rest zero). With `live`
// (one bit per channel from c_first), the rows of channels whose bit is clear are skipped:
// left unwritten, for a kernel that never reads them. Returns true if any packed weight is NaN
// or infinite: kernels that skip zeros check their weights where they read them anyway
// (Kernel::checks_weights), and the weights they do not pack with DeadRowsNonFinite.
[[nodiscard]] bool PackWeightRows(const ConvGeometry& g, const float* w, int64_t c_first,
                                  int64_t count, int64_t rows_per_tap, int64_t o_first,
                                  int64_t o_len, int64_t o_pad, const uint64_t* live, float* dst);

// True if a weight of a dead channel of group grp (live(c) false for channel c of the group)
// is NaN or infinite, among the weight rows (tap, channel) of share `share` of `shares`: each
// row whole (all of the group's outputs), in order. The pieces of a group that pack only live
// channels' rows check the others with this, each its share, so each row is read once.
template <typename Live>
bool DeadRowsNonFinite(const ConvGeometry& g, const float* w, int64_t grp, int64_t share,
                       int64_t shares, Live&& live) {
  const int64_t rows = g.kh * g.kw * g.ci, og = g.OutPerGroup();
  for (int64_t r = share * rows / shares; r < (share + 1) * rows / shares; ++r) {
    if (!live(r % g.ci) && RowsNonFinite(w + r * g.o + grp * og, 1, g.o, og)) return true;
  }
  return false;
}

// Packs output block `block` of group grp of HWIO w into dst ([kh][kw][ci][block width]; with
// `live`, only the rows of live channels). Returns true if a packed weight is NaN or infinite.
[[nodiscard]] bool PackTile(const ConvGeometry& g, const float* w, int64_t grp,
                            const OutputBlock& block, const uint64_t* live, float* dst);

// Weights prepared whole (Kernel::prepared) by CPO and sparse_direct: every output block of
// every group (SplitOutputChannels with the kernel's max_o_vecs) packed by PackTile, block
// after block and group after group with no gaps. The blocks' width is part of the layout's
// tag (PreparedTilesLayout, with the layout's version). PreparedTilesFloats is their size,
// PreparedTileOffset where block `block` of group grp starts, and PrepareTiles packs them all
// (false if a weight is NaN or infinite).
int64_t PreparedTilesFloats(const ConvGeometry& g);
int64_t PreparedTilesLayout(int64_t max_o_vecs);
int64_t PreparedTileOffset(const ConvGeometry& g, int64_t grp, const OutputBlock& block);
[[nodiscard]] bool PrepareTiles(const ConvGeometry& g, const float* w, int64_t max_o_vecs,
                                float* dst);
// What PreparedWeights::run of such a kernel answers before it runs: kStalePreparedWeights
// for another layout than PreparedTilesLayout(max_o_vecs), an error for another size than
// PreparedTilesFloats(g), else "".
std::string CheckPreparedTiles(const ConvGeometry& g, int64_t count, int64_t layout,
                               int64_t max_o_vecs);

// A kernel's run on HWIO weights w (prepared nullptr) or on prepared ones (w nullptr), with the
// tile kernels `kernels`.
using TileKernelRun = std::string (*)(const ConvGeometry& g, const SparseKernelSet& kernels,
                                      const float* x, const float* w, const float* prepared,
                                      float* y, Parallel& parallel);

// The PreparedWeights of a kernel whose output blocks have ActiveSparseKernels().*kMaxOVecs
// vectors and that runs as kRun.
template <int64_t SparseKernelSet::* kMaxOVecs, TileKernelRun kRun>
struct PreparedTiles {
  static int64_t Layout() { return PreparedTilesLayout(ActiveSparseKernels().*kMaxOVecs); }
  static bool Prepare(const ConvGeometry& g, const float* w, float* dst) {
    return PrepareTiles(g, w, ActiveSparseKernels().*kMaxOVecs, dst);
  }
  static std::string Run(const ConvGeometry& g, const float* x, const float* prepared,
                         int64_t count, int64_t layout, float* y, Parallel& parallel) {
    const SparseKernelSet& kernels = ActiveSparseKernels();  // one snapshot for check and run
    const std::string err = CheckPreparedTiles(g, count, layout, kernels.*kMaxOVecs);
    return err.empty() ? kRun(g, kernels, x, nullptr, prepared, y, parallel) : err;
  }
  static constexpr PreparedWeights kWeights = {PreparedTilesFloats, Layout, Prepare, Run};
};

// Copies the convolution window into a CpoJob or DirectJob.
template <typename Job>
void SetJobWindow(const ConvGeometry& g, Job* job) {
  job->kh_count = g.kh;
  job->kw_count = g.kw;
  job->sh = g.sh;
  job->sw = g.sw;
  job->dh = g.dh;
  job->dw = g.dw;
  job->pad_top = g.pad_top;
  job->pad_left = g.pad_left;
  job->oh = g.oh;
  job->ow = g.ow;
}

}  // namespace jaxcps

#endif  // JAXCPS_KERNELS_TILE_DRIVER_H_
