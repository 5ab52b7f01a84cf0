// Sparse direct: a register-blocked direct convolution that skips zero channels. Not one of
// the paper's algorithms; it takes their idea (skip what is zero, never lower the input) where
// CPO cannot: CPO multiplies each non-zero for one output pixel at a time, so every multiply-add
// loads its own weight vector and the kernel is bound by the bandwidth of the cache holding
// the weights. Here each loaded weight vector serves a block of adjacent output pixels, whose
// accumulators stay in registers, and a channel is skipped where it is zero at every pixel of
// the block (per-pixel channel bitmasks, built in one pass over the input). Zeros inside that
// union are multiplied, so the kernel does more multiply-adds than CPO at high sparsity but at
// a rate close to a dense direct convolution; at 0% zeros it is one.
//
// Work: pieces (group, output tile, band of output rows) write disjoint outputs. A piece packs
// its tile's weights ([kh][kw][channel][tile width], only channels non-zero somewhere) into
// its worker's buffer, where they stay in L2 while every pixel block streams them; where a
// tile's weights would not fit, the channels are split into chunks whose partial sums
// accumulate in the output. Prepared weights (PreparedWeights) hold every tile in that layout,
// packed once, tile after tile and group after group with no gaps (PreparedTileOffset); pieces
// then read their tile from there and pack nothing.
#include <algorithm>
#include <atomic>
#include <vector>

#include "kernels/kernel.h"
#include "kernels/tile_driver.h"
#include "runtime/build_profile.h"
#include "runtime/cache.h"
#include "runtime/isa.h"
#include "runtime/workspace.h"
#include "sparse/format.h"
#include "sparse/tile_kernels.h"

namespace jaxcps {

namespace {

// The packed weights of a chunk of one output tile, which every pixel block reads: at most
// three quarters of L2, with a floor and a cap. Measured on Zen 2 (512 KiB of L2; 64-channel
// tiles, VGG-16 conv4_2, one thread), the whole 1.2 MiB tile against chunks of 768, 384 and
// 256 KiB: at 0% zeros 48.9, 48.5, 44.7 and 43.1 ms; at 50% 38.4, 37.4, 33.4, 33.9; at 70%
// 27.8, 26.8, 24.9, 25.9; at 90% 12.8, 12.5, 13.4, 15.1 (each chunk is one more pass).
int64_t MaxChunkWeightBytes() {
  return std::clamp<int64_t>(L2CacheBytes() / 4 * 3, int64_t{256} << 10, int64_t{2} << 20);
}
// Pieces per thread wanted when output tiles alone leave threads idle or unbalanced.
constexpr int64_t kPiecesPerThread = 4;
// Packed tiles this small cost little to pack once per band.
constexpr int64_t kSmallTileBytes = int64_t{512} << 10;

struct Plan {
  std::vector<OutputBlock> tiles;  // output tiles of a group
  int64_t chunk_blocks;            // channel blocks (of 64) per chunk
  int64_t chunks;                  // chunks per group
  int64_t tile_floats;             // packed weights of the widest tile
  int64_t bands;                   // bands of output rows per tile
};

Plan MakePlan(const ConvGeometry& g, const SparseKernelSet& kernels, int64_t threads) {
  Plan plan;
  plan.tiles = SplitOutputChannels(g.OutPerGroup(), kernels.direct_max_o_vecs);
  const int64_t o_width = plan.tiles[0].vecs * kVectorLanes;
  const int64_t blocks = (g.ci + kMaskChannels - 1) / kMaskChannels;
  const int64_t block_bytes = g.kh * g.kw * kMaskChannels * o_width * 4;
  const int64_t most = std::clamp<int64_t>(MaxChunkWeightBytes() / block_bytes, 1, blocks);
  plan.chunks = (blocks + most - 1) / most;
  plan.chunk_blocks = (blocks + plan.chunks - 1) / plan.chunks;
  plan.tile_floats = g.kh * g.kw * g.ci * o_width;
  // Every band packs its tile's weights again: with large tiles, more than one band per tile
  // only while the pieces cannot keep every thread busy to the end; with small ones, enough
  // pieces that threads slowed down by other work still finish together.
  const int64_t per_band = g.groups * static_cast<int64_t>(plan.tiles.size()), rows = g.n * g.oh;
  if (plan.tile_floats * 4 <= kSmallTileBytes) {
    plan.bands =
        std::clamp<int64_t>((kPiecesPerThread * threads + per_band - 1) / per_band, 1, rows);
  } else {
    plan.bands = 1;
    while (plan.bands < rows && (per_band * plan.bands) % threads != 0 &&
           per_band * plan.bands < kPiecesPerThread * threads) {
      ++plan.bands;
    }
  }
  return plan;
}

std::string Supports(const ConvGeometry&) { return {}; }

// Runs with HWIO weights w, packed per piece, or with weights prepared by Prepare for the tiles
// of `kernels` (w nullptr).
std::string RunWith(const ConvGeometry& g, const SparseKernelSet& kernels, const float* x,
                    const float* w, const float* prepared, float* y, Parallel& parallel) {
  if (g.n == 0 || g.oh == 0 || g.ow == 0 || g.o == 0) return {};
  if (g.ci == 0 || g.h == 0 || g.w == 0) {  // no input (only padding): every output is 0
    std::fill(y, y + g.n * g.oh * g.ow * g.o, 0.0f);
    return {};
  }
  const Plan plan = MakePlan(g, kernels, parallel.NumThreads());
  const int64_t tiles = static_cast<int64_t>(plan.tiles.size());
  const int64_t per_group = tiles * plan.bands, pieces = g.groups * per_group;
  const int64_t workers = WorkerCount(parallel, pieces);

  ChannelMasks masks;
  std::string err;
  {
    BuildProfileScope profile;
    err = BuildMasks(x, g.n, g.h, g.w, g.c, g.groups, parallel, &masks);
  }
  // Per worker: one tile's packed weights. Shared: a zero pixel (and its masks) that pixels
  // outside the input read.
  const int64_t bpg = masks.blocks_per_group;
  Workspace<float> packed, zero_x;
  Workspace<uint64_t> zero_masks;
  if (err.empty() && prepared == nullptr) {
    err = packed.Allocate(CheckedBytes(workers, plan.tile_floats),
                          "the sparse-direct packed weights");
  }
  if (err.empty()) err = zero_x.Allocate(g.ci, "a zero pixel");
  if (err.empty()) err = zero_masks.Allocate(bpg, "a zero pixel's masks");
  if (!err.empty()) return err;
  std::fill_n(zero_x.data(), g.ci, 0.0f);
  std::fill_n(zero_masks.data(), bpg, uint64_t{0});

  const int64_t og = g.OutPerGroup(), rows = g.n * g.oh;
  const int64_t band_rows = (rows + plan.bands - 1) / plan.bands;
  std::atomic<bool> failed{false}, nonfinite{false};
  ForEachChunk(parallel, pieces, workers, [&](int64_t piece, int64_t worker) {
    if (nonfinite.load(std::memory_order_relaxed)) return;  // the caller will run a dense kernel
    const int64_t band = piece % plan.bands;
    const OutputBlock& tile = plan.tiles[(piece / plan.bands) % tiles];
    const int64_t grp = piece / (plan.bands * tiles);
    DirectJob job;
    job.row_begin = band * band_rows;
    job.row_end = std::min(rows, job.row_begin + band_rows);
    job.o_len = tile.length;
    job.o_vecs = tile.vecs;
    const int64_t o_pad = tile.vecs * kVectorLanes;  // a last, narrow tile has fewer vectors
    const float* weights;
    if (prepared != nullptr) {  // finite, or Prepare would have refused them
      if (job.row_begin >= job.row_end) return;
      weights = prepared + PreparedTileOffset(g, grp, tile);
    } else {
      float* own = packed.data() + worker * plan.tile_floats;
      // Every weight is checked for NaN/Inf: those of live channels by the packing of each
      // (group, tile), which band 0 (never empty) does; those of dead channels, which no tile
      // packs, as whole rows in order, each piece of the group taking its share.
      const uint64_t* live = masks.live.data() + grp * bpg;
      if (DeadRowsNonFinite(g, w, grp, piece % per_group, per_group,
                            [live](int64_t c) { return ChannelLive(live, c); }) ||
          (job.row_begin < job.row_end && PackTile(g, w, grp, tile, live, own))) {
        nonfinite.store(true, std::memory_order_relaxed);
        return;
      }
      if (job.row_begin >= job.row_end) return;
      weights = own;
    }
    job.x = x + grp * g.ci;
    job.masks = masks.masks.data() + grp * bpg;
    job.zero_x = zero_x.data();
    job.zero_masks = zero_masks.data();
    job.h = g.h;
    job.w = g.w;
    job.pixel_stride = g.c;
    job.mask_stride = masks.PixelStride();
    job.weights = weights;
    job.tap_stride = g.ci * o_pad;
    SetJobWindow(g, &job);
    job.out = y + job.row_begin * g.ow * g.o + grp * og + tile.offset;
    job.out_stride = g.o;
    for (int64_t chunk = 0; chunk < plan.chunks; ++chunk) {
      job.block_begin = chunk * plan.chunk_blocks;
      job.block_end = std::min(bpg, job.block_begin + plan.chunk_blocks);
      job.accumulate = chunk > 0;
      if (!kernels.direct_band(job)) failed.store(true, std::memory_order_relaxed);
    }
  });
  if (nonfinite.load()) return kNonFiniteWeights;
  if (failed.load()) return "internal error: an output tile wider than the registers";
  return {};
}

std::string Run(const ConvGeometry& g, const float* x, const float* w, float* y,
                Parallel& parallel) {
  return RunWith(g, ActiveSparseKernels(), x, w, nullptr, y, parallel);
}

using Prepared = PreparedTiles<&SparseKernelSet::direct_max_o_vecs, RunWith>;

KernelSizes Sizes() {
  const SparseKernelSet& kernels = ActiveSparseKernels();
  return {{"o_lanes", kVectorLanes},
          {"max_o_block", kernels.direct_max_o_vecs * kVectorLanes},
          {"pixel_block", kernels.direct_pixels},
          {"channel_block", kMaskChannels},
          {"max_chunk_weight_bytes", MaxChunkWeightBytes()}};
}

}  // namespace

extern const Kernel kSparseDirect = {
    "sparse_direct",
    "Sparse direct: register-blocked direct convolution skipping channels zero in a pixel block",
    /*user_facing=*/true,
    /*skips_zeros=*/true,
    /*checks_weights=*/true,
    /*uses_blas=*/false,
    Supports,
    Run,
    Sizes,
    /*compressed_bytes=*/nullptr,
    &Prepared::kWeights};

}  // namespace jaxcps
