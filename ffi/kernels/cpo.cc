// CPO (Compressed Pattern Overlap): build the channel-block-major compressed activation
// (sparse/format.h) and gather, for every output pixel, the non-zeros under the kernel times
// their weight rows (the ISA kernel CpoBand). Each non-zero is stored once; the taps it feeds
// follow from its position and are never stored.
//
// Work is split into pieces (group, block of output channels, band of output rows across the
// batch) that write disjoint outputs, so threads never conflict. Inside a piece, channel blocks
// run outermost: the piece packs one block's weights ([kh][kw][channel][output], zero-padded to
// whole vectors) into its worker's buffer, small enough to stay in L1/L2 while every output
// pixel of the band gathers from them, its accumulators held in registers and kept between
// channel blocks in the worker's own output tile; the last block stores the sums to y (or the
// tile's valid channels are copied there where the output block is not whole vectors), and
// one group whose channels are one block of whole vectors accumulates in y itself. Prepared weights
// (PreparedWeights, the layout of kernels/tile_driver.h) hold every channel of an output block
// in that layout, packed and checked once: a piece then copies a channel block's rows, one
// contiguous run per tap (read in place, they were 5-15% slower: docs/design.md).
//
// Refinements of the paper's CPO, each measured (docs/design.md): channel blocks sized from the
// activation's density and the L1 cache, so a block holds a few non-zeros per pixel at any
// sparsity; per-block packed weights; one gather loop per kernel row (its columns are one range
// of the row), run a kernel row at a time over an output row.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "kernels/kernel.h"
#include "kernels/tile_driver.h"
#include "runtime/build_profile.h"
#include "runtime/isa.h"
#include "runtime/workspace.h"
#include "sparse/format.h"
#include "sparse/tile_kernels.h"

namespace jaxcps {

namespace {

// Output pixels of one band: their accumulated outputs (up to 128 floats each, 512 KiB) are
// read and written once per channel block and should stay in L2.
constexpr int64_t kMaxBandPixels = 1024;

std::string Supports(const ConvGeometry& g) { return CheckSparseShape(g.w, g.c); }

// Copies the rows of the live channels (bits of *live) among [c_first, c_first + count) of an
// output block's prepared weights (`[kh][kw][ci][o_pad]`, at `block`) into dst as
// PackWeightRows packs them: runs of consecutive live channels, one memcpy each.
void CopyPreparedRows(const ConvGeometry& g, const float* block, int64_t c_first, int64_t count,
                      int64_t rows_per_tap, int64_t o_pad, const uint64_t* live, float* dst) {
  for (int64_t tap = 0; tap < g.kh * g.kw; ++tap) {
    for (int64_t c = 0; c < count;) {
      if (!ChannelLive(live, c)) {
        ++c;
        continue;
      }
      int64_t end = c + 1;
      while (end < count && ChannelLive(live, end)) ++end;
      std::memcpy(dst + (tap * rows_per_tap + c) * o_pad,
                  block + (tap * g.ci + c_first + c) * o_pad,
                  static_cast<size_t>((end - c) * o_pad) * sizeof(float));
      c = end;
    }
  }
}

// Runs with HWIO weights w, packed per piece, or with weights prepared by Prepare for the
// blocks of `kernels` (w nullptr).
std::string RunWith(const ConvGeometry& g, const SparseKernelSet& kernels, const float* x,
                    const float* w, const float* prepared, float* y, Parallel& parallel) {
  if (g.n == 0 || g.oh == 0 || g.ow == 0 || g.o == 0) return {};
  if (g.ci == 0) {  // no input channels: every output is an empty sum
    std::fill(y, y + g.n * g.oh * g.ow * g.o, 0.0f);
    return {};
  }
  CpoActivation act;
  std::string err;
  {
    BuildProfileScope profile;
    const int64_t block_size =
        CpoBlockSize(EstimateDensity(x, g.n, g.h, g.w, g.c), g.ci, g.w, g.kw);
    // Finding the live channels costs 12-14% more build time; it pays where the weights that
    // dead channels would spare packing outweigh the activation (few pixels, many weights).
    const bool live_channels = g.kh * g.kw * g.ci * g.o >= g.n * g.h * g.w * g.c;
    err = BuildCpo(x, g.n, g.h, g.w, g.c, g.groups, block_size, live_channels, parallel, &act);
  }
  if (!err.empty()) return err;

  const std::vector<OutputBlock> o_blocks =
      SplitOutputChannels(g.OutPerGroup(), kernels.cpo_max_o_vecs);
  const int64_t per_band = g.groups * static_cast<int64_t>(o_blocks.size());
  // Every band packs the weights again, so bands only where output blocks alone leave threads
  // idle, or where a band's accumulated outputs would no longer fit in L2.
  const int64_t rows = g.n * g.oh;
  const int64_t for_threads = (parallel.NumThreads() + per_band - 1) / per_band;
  const int64_t for_cache = (rows * g.ow + kMaxBandPixels - 1) / kMaxBandPixels;
  const int64_t bands = std::clamp<int64_t>(std::max(for_threads, for_cache), 1, rows);
  const int64_t band_rows = (rows + bands - 1) / bands;
  const int64_t pieces = per_band * bands, per_group = pieces / g.groups;
  const int64_t workers = WorkerCount(parallel, pieces);

  // Per worker: one block's packed weights and an output tile (the band's pixels, the output
  // block's vectors each) that the kernel accumulates into until the last block stores to y
  // (or, for an output block that is not whole vectors, the tile's valid channels are copied
  // there). Pieces running at once are often output blocks of the same pixels; two
  // threads accumulating side by side in y, each block's 256 bytes next to the other's, ran
  // 4-20% slower than in tiles of their own (docs/design.md, section 3.2). With one group of
  // one whole-vector output block the pieces are bands, disjoint pixels: they accumulate in y,
  // sparing the tile.
  const bool in_y = g.groups == 1 && o_blocks.size() == 1 &&
                    o_blocks[0].length == o_blocks[0].vecs * kVectorLanes;
  const int64_t max_o = kernels.cpo_max_o_vecs * kVectorLanes;
  const int64_t weight_floats = g.kh * g.kw * act.tap_rows * max_o;
  const int64_t tile_floats = in_y ? 0 : band_rows * g.ow * max_o;
  Workspace<float> packed, tiles;
  err = packed.Allocate(CheckedBytes(workers, weight_floats), "the CPO packed weights");
  if (err.empty()) err = tiles.Allocate(CheckedBytes(workers, tile_floats), "the CPO tiles");
  if (!err.empty()) return err;

  // Channels with no non-zero anywhere in the batch (dead channels) are never multiplied, and
  // never packed where the build found them (live_channels; otherwise only blocks of dead
  // channels are left out). Channel c of group grp is bit c % block_size of its block's word.
  const uint64_t* live = act.live.data();
  const auto channel_live = [&](int64_t grp, int64_t c) {
    return ChannelLive(live + grp * act.blocks_per_group + c / act.block_size, c % act.block_size);
  };

  std::atomic<bool> failed{false}, nonfinite{false};
  ForEachChunk(parallel, pieces, workers, [&](int64_t piece, int64_t worker) {
    if (nonfinite.load(std::memory_order_relaxed)) return;  // the caller will run a dense kernel
    const int64_t band = piece % bands;
    const OutputBlock& ob = o_blocks[(piece / bands) % o_blocks.size()];
    const int64_t grp = piece / (bands * o_blocks.size());
    const int64_t o_first = grp * g.OutPerGroup() + ob.offset;
    const int64_t o_pad = ob.vecs * kVectorLanes;

    CpoJob job;
    job.values = act.values.data();
    job.index = act.index.data();
    job.ptr = act.ptr.data();
    job.h = g.h;
    job.w = g.w;
    job.slot_capacity = act.SlotCapacity();
    job.blocks = act.Blocks();
    job.tap_rows = act.tap_rows;
    job.weights = packed.data() + worker * weight_floats;
    SetJobWindow(g, &job);
    job.row_begin = band * band_rows;
    job.row_end = std::min(rows, job.row_begin + band_rows);
    job.o_vecs = ob.vecs;
    // Every weight is checked for NaN/Inf: a live channel's rows as they are packed by each
    // (group, output block), which band 0 (never empty) does; a dead channel's, which no piece
    // packs, as whole rows, each piece of the group taking its share. Prepared weights are
    // finite, or Prepare would have refused them.
    if (prepared == nullptr && DeadRowsNonFinite(g, w, grp, piece % per_group, per_group,
                                                 [&](int64_t c) { return channel_live(grp, c); })) {
      nonfinite.store(true, std::memory_order_relaxed);
      return;
    }
    if (job.row_begin >= job.row_end) return;
    float* y_band = y + job.row_begin * g.ow * g.o + o_first;
    job.out = in_y ? y_band : tiles.data() + worker * tile_floats;
    job.out_stride = in_y ? g.o : o_pad;
    // The last live block stores its sums to y itself where the output block is whole vectors
    // (no channels to leave out), sparing the tile's copy.
    const bool final_in_y = !in_y && ob.length == o_pad;
    int64_t last_live = -1;
    for (int64_t b = 0; b < act.blocks_per_group; ++b) {
      if (live[grp * act.blocks_per_group + b] != 0) last_live = b;
    }

    job.accumulate = false;
    job.final_out = nullptr;
    job.final_stride = g.o;
    for (int64_t b = 0; b < act.blocks_per_group; ++b) {
      job.block = grp * act.blocks_per_group + b;
      const int64_t c_first = b * act.block_size;
      const int64_t count = std::min(act.block_size, g.ci - c_first);
      if (live[job.block] == 0) continue;
      if (b == last_live && final_in_y) job.final_out = y_band;
      if (prepared != nullptr) {
        CopyPreparedRows(g, prepared + PreparedTileOffset(g, grp, ob), c_first, count, act.tap_rows,
                         o_pad, &live[job.block], packed.data() + worker * weight_floats);
      } else if (PackWeightRows(g, w, c_first, count, act.tap_rows, o_first, ob.length, o_pad,
                                &live[job.block], packed.data() + worker * weight_floats)) {
        nonfinite.store(true, std::memory_order_relaxed);
        return;
      }
      if (!kernels.cpo_band(job)) failed.store(true, std::memory_order_relaxed);
      job.accumulate = true;
    }
    const int64_t band_pixels = (job.row_end - job.row_begin) * g.ow;
    if (!job.accumulate) {  // no live block in this group: every output is an empty sum
      for (int64_t p = 0; p < band_pixels; ++p) std::fill_n(y_band + p * g.o, ob.length, 0.0f);
    } else if (!in_y && job.final_out == nullptr) {  // the tile's valid channels into y
      for (int64_t p = 0; p < band_pixels; ++p) {
        std::memcpy(y_band + p * g.o, job.out + p * o_pad,
                    static_cast<size_t>(ob.length) * sizeof(float));
      }
    }
  });
  if (nonfinite.load()) return kNonFiniteWeights;
  if (failed.load()) return "internal error: an output-channel block wider than the registers";
  return {};
}

std::string Run(const ConvGeometry& g, const float* x, const float* w, float* y,
                Parallel& parallel) {
  return RunWith(g, ActiveSparseKernels(), x, w, nullptr, y, parallel);
}

using Prepared = PreparedTiles<&SparseKernelSet::cpo_max_o_vecs, RunWith>;

uint64_t CompressedBytes(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t groups,
                         int64_t kernel_cols, std::string* err) {
  SerialParallel serial;
  CpoActivation act;
  const int64_t block_size =
      CpoBlockSize(EstimateDensity(x, n, h, w, c), c / groups, w, kernel_cols);
  *err = BuildCpo(x, n, h, w, c, groups, block_size, /*live_channels=*/false, serial, &act);
  return err->empty() ? act.FootprintBytes() : 0;
}

KernelSizes Sizes() {
  return {{"o_lanes", kVectorLanes},
          {"max_o_block", ActiveSparseKernels().cpo_max_o_vecs * kVectorLanes},
          {"min_channel_block", kCpoMinChannelBlock},
          {"max_channel_block", kCpoMaxChannelBlock},
          {"max_width", kMaxSparseWidth},
          {"max_channels", kMaxSparseWidth}};
}

}  // namespace

extern const Kernel kCpo = {"cpo",
                            "Compressed Pattern Overlap: per-pixel gather of non-zeros",
                            /*user_facing=*/true,
                            /*skips_zeros=*/true,
                            /*checks_weights=*/true,
                            /*uses_blas=*/false,
                            Supports,
                            Run,
                            Sizes,
                            CompressedBytes,
                            &Prepared::kWeights};

}  // namespace jaxcps
