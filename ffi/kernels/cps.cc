// CPS driver: build the run-compressed activation (sparse/format.h), split the output into
// tiles, compute each tile's row overlap patterns, and run the ISA tile kernel (CpsTile).
//
// Parallel work is one tile (image, output-row band, output-column block, group, block of
// kTileO output channels): tiles write disjoint outputs, so threads never conflict.
// Inside a tile, input channels are outermost: the weights of one channel for the tile's
// output channels (KH*KW*kTileO floats) stay in L1 while every non-zero of that channel in
// the tile's input window accumulates into the L1-resident output tile.
#include <algorithm>
#include <cstring>

#include "kernels/kernel.h"
#include "runtime/build_profile.h"
#include "runtime/isa.h"
#include "runtime/workspace.h"
#include "sparse/format.h"
#include "sparse/tile_kernels.h"

namespace jaxcps {

namespace {

constexpr int64_t kTilePixels = 64;  // output pixels per tile: 64 * kTileO floats = 16 KiB
constexpr int64_t kMaxTileW = 16;

// Row overlap patterns: for each input row i in [begin, end), the taps k whose
// output index (i + pad - k*dil) / stride is an integer in [out_begin, out_end).
// Stores tap and output (relative to out_begin) at [(i-begin)*taps + t]; returns the range.
void AxisPatterns(int64_t out_begin, int64_t out_end, int64_t size, int64_t pad, int64_t stride,
                  int64_t dil, int64_t taps, int64_t* begin, int64_t* end, int32_t* count,
                  int32_t* tap, int32_t* out) {
  // Input indices that reach the range: i + pad in [out_begin*stride, (out_end-1)*stride +
  // (taps-1)*dil].
  *begin = std::max<int64_t>(0, out_begin * stride - pad);
  *end = std::min<int64_t>(size, (out_end - 1) * stride + (taps - 1) * dil - pad + 1);
  for (int64_t i = *begin; i < *end; ++i) {
    const int64_t slot = i - *begin;
    int32_t n = 0;
    for (int64_t k = 0; k < taps; ++k) {
      const int64_t t = i + pad - k * dil;
      if (t < out_begin * stride) break;  // t only decreases with k
      if (t % stride != 0) continue;
      const int64_t o = t / stride;
      if (o >= out_end) continue;
      tap[slot * taps + n] = static_cast<int32_t>(k);
      out[slot * taps + n] = static_cast<int32_t>(o - out_begin);
      ++n;
    }
    count[slot] = n;
  }
}

struct Tiling {
  int64_t tile_h, tile_w, bands, col_blocks, o_blocks, count;
  int64_t window_h;  // largest input-row window of a tile (sizes the pattern tables)
};

Tiling MakeTiling(const ConvGeometry& g) {
  Tiling t;
  t.tile_w = std::min(g.ow, kMaxTileW);
  t.tile_h = std::min(g.oh, std::max<int64_t>(1, kTilePixels / t.tile_w));
  t.bands = (g.oh + t.tile_h - 1) / t.tile_h;
  t.col_blocks = (g.ow + t.tile_w - 1) / t.tile_w;
  t.o_blocks = (g.OutPerGroup() + kTileO - 1) / kTileO;
  t.count = g.n * t.bands * t.col_blocks * g.groups * t.o_blocks;
  t.window_h = std::min(g.h, (t.tile_h - 1) * g.sh + (g.kh - 1) * g.dh + 1);
  return t;
}

std::string Supports(const ConvGeometry& g) { return CheckSparseShape(g.w, g.c); }

std::string Run(const ConvGeometry& g, const float* x, const float* w, float* y,
                Parallel& parallel) {
  if (g.n == 0 || g.oh == 0 || g.ow == 0 || g.o == 0) return {};
  CpsActivation act;
  std::string err;
  {
    BuildProfileScope profile;
    err = BuildCps(x, g.n, g.h, g.w, g.c, parallel, &act);
  }
  if (!err.empty()) return err;

  const Tiling tiling = MakeTiling(g);
  const int64_t workers = WorkerCount(parallel, tiling.count);
  // Per worker: the accumulator, then row and column pattern tables.
  const int64_t acc_floats = tiling.tile_h * tiling.tile_w * kTileO;
  const int64_t row_ints = tiling.window_h * (1 + 2 * g.kh);
  Workspace<float> acc;
  Workspace<int32_t> tables;
  err = acc.Allocate(CheckedBytes(workers, acc_floats), "the tile accumulators");
  if (err.empty()) {
    err = tables.Allocate(CheckedBytes(workers, row_ints), "the pattern tables");
  }
  if (!err.empty()) return err;

  const auto kernel = ActiveSparseKernels().cps_tile;
  const int64_t og = g.OutPerGroup();
  ForEachChunk(parallel, tiling.count, workers, [&](int64_t tile, int64_t worker) {
    int64_t rest = tile;
    const int64_t ob = rest % tiling.o_blocks;
    rest /= tiling.o_blocks;
    const int64_t grp = rest % g.groups;
    rest /= g.groups;
    const int64_t cb = rest % tiling.col_blocks;
    rest /= tiling.col_blocks;
    const int64_t band = rest % tiling.bands;
    const int64_t n = rest / tiling.bands;

    const int64_t oh0 = band * tiling.tile_h, oh1 = std::min(g.oh, oh0 + tiling.tile_h);
    const int64_t ow0 = cb * tiling.tile_w, ow1 = std::min(g.ow, ow0 + tiling.tile_w);
    const int64_t o_begin = grp * og + ob * kTileO;
    const int64_t o_len = std::min(kTileO, og - ob * kTileO);

    int32_t* row_tables = tables.data() + worker * row_ints;
    CpsJob job;
    AxisPatterns(oh0, oh1, g.h, g.pad_top, g.sh, g.dh, g.kh, &job.r_begin, &job.r_end, row_tables,
                 row_tables + tiling.window_h, row_tables + tiling.window_h * (1 + g.kh));
    job.q_begin = std::max<int64_t>(0, ow0 * g.sw - g.pad_left);
    job.q_end = std::min<int64_t>(g.w, (ow1 - 1) * g.sw + (g.kw - 1) * g.dw - g.pad_left + 1);
    job.row_taps = row_tables;
    job.row_kh = row_tables + tiling.window_h;
    job.row_oh = row_tables + tiling.window_h * (1 + g.kh);
    job.kh_count = g.kh;
    job.kw_count = g.kw;

    job.values = act.values.data();
    job.run_start = act.run_start.data();
    job.run_len = act.run_len.data();
    job.ptr = act.ptr.data();
    job.vptr = act.vptr.data();
    job.slot_capacity = act.SlotCapacity();
    job.c_total = g.c;
    job.first_slot = n * g.h;
    job.c_begin = grp * g.ci;
    job.c_end = (grp + 1) * g.ci;
    job.weights = w + o_begin;
    job.tap_stride = g.ci * g.o;
    job.o_stride = g.o;
    job.o_len = o_len;
    job.pad_left = g.pad_left;
    job.sw = g.sw;
    job.dw = g.dw;
    job.ow_begin = ow0;
    job.ow_end = ow1;
    job.tile_w = ow1 - ow0;
    job.acc = acc.data() + worker * acc_floats;

    const int64_t pixels = (oh1 - oh0) * (ow1 - ow0);
    std::memset(job.acc, 0, static_cast<size_t>(pixels * kTileO) * sizeof(float));
    if (job.r_begin < job.r_end && job.q_begin < job.q_end) kernel(job);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const float* src = job.acc + ((oh - oh0) * job.tile_w + (ow - ow0)) * kTileO;
        std::memcpy(y + ((n * g.oh + oh) * g.ow + ow) * g.o + o_begin, src,
                    static_cast<size_t>(o_len) * sizeof(float));
      }
    }
  });
  return {};
}

uint64_t CompressedBytes(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t,
                         int64_t, std::string* err) {
  SerialParallel serial;
  CpsActivation act;
  *err = BuildCps(x, n, h, w, c, serial, &act);
  return err->empty() ? act.FootprintBytes() : 0;
}

KernelSizes Sizes() {
  return {{"tile_o", kTileO},
          {"tile_pixels", kTilePixels},
          {"max_tile_w", kMaxTileW},
          {"max_width", kMaxSparseWidth},
          {"max_channels", kMaxSparseWidth}};
}

}  // namespace

extern const Kernel kCps = {"cps",
                            "Compressed Pattern Sets: runs of non-zeros scattered into L1 tiles",
                            /*user_facing=*/true,
                            /*skips_zeros=*/true,
                            /*checks_weights=*/false,
                            /*uses_blas=*/false,
                            Supports,
                            Run,
                            Sizes,
                            CompressedBytes,
                            /*prepared=*/nullptr};

}  // namespace jaxcps
