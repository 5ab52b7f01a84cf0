// MEC (Cho & Brand, ICML 2017), baseline: lowering along the width only.
//
// L holds one row per (padded input row hp, output column ow): the KW taps of that column
// strip for all channels of a group (KW*Ci floats). Every input element is copied about KW/SW
// times (the horizontal overlaps) and never vertically; for a whole image L is MEC's
// OW x Hp*KW*Ci matrix (the footprint jaxcps.footprint reports).
//
// Vertical overlaps are shared, not copied: the operand of kernel row kh is a view of L. MEC's
// paper runs one GEMM per output row (M = OW rows, K = KH*KW*Ci). BLAS packs the whole weight
// matrix on every call, which on small maps (OW = 14, 7) costs more than the GEMM, so we
// group the same products by kernel row instead: KH GEMMs over many output pixels (K = KW*Ci),
// accumulated. For that, L's rows are ordered by (hp mod SH, hp / SH, ow): the rows that
// kernel row kh reads for output pixels m = oh*OW + ow are then L rows m + offset(kh), a plain
// matrix with leading dimension KW*Ci, for any stride and dilation.
//
// Work is split into bands of output rows (per image and group), each lowering just the padded
// rows it reads into its worker's buffer, so the lowered rows and the accumulated outputs stay
// in cache; bands run in parallel.
#include <algorithm>

#include "kernels/kernel.h"
#include "kernels/lowering.h"
#include "runtime/blas.h"
#include "runtime/workspace.h"

namespace jaxcps {

namespace {

struct Banding {
  int64_t rows;         // output rows per band
  int64_t bands;        // per image and group
  int64_t phase_rows;   // L rows per phase (hp mod SH) in one band's buffer
  int64_t band_floats;  // one band's lowered rows
};

// Bands as tall as possible while a band's outputs (og floats per pixel, accumulated over KH
// GEMMs) fit in L2 (256 KiB) and its lowered rows in about 2 MiB, and short enough that every
// thread gets a band.
Banding MakeBanding(const ConvGeometry& g, int64_t threads) {
  const int64_t strip = g.kw * g.ci;
  const int64_t extent = (g.kh - 1) * g.dh + 1;
  auto lowered_floats = [&](int64_t rows) {
    const int64_t needed = (rows - 1) * g.sh + extent;
    return g.sh * ((needed + g.sh - 1) / g.sh) * g.ow * strip;
  };
  const int64_t per_image = g.n * g.groups;
  int64_t rows = (g.oh + std::max<int64_t>(1, threads / per_image) - 1) /
                 std::max<int64_t>(1, threads / per_image);
  rows = std::min(rows, std::max<int64_t>(1, (int64_t{1} << 16) / (g.ow * g.OutPerGroup())));
  while (rows > 1 && lowered_floats(rows) > (int64_t{1} << 19)) --rows;
  Banding b;
  b.rows = std::max<int64_t>(1, rows);
  b.bands = (g.oh + b.rows - 1) / b.rows;
  b.phase_rows = ((b.rows - 1) * g.sh + extent + g.sh - 1) / g.sh;
  b.band_floats = lowered_floats(b.rows);
  return b;
}

std::string Supports(const ConvGeometry& g) {
  return CheckBlasSizes({{"output height x width", g.oh * g.ow},
                         {"output channels", g.o},
                         {"kernel width x input channels per group", g.kw * g.ci}},
                        "mec");
}

std::string Run(const ConvGeometry& g, const float* x, const float* w, float* y,
                Parallel& parallel) {
  if (g.n == 0 || g.oh == 0 || g.ow == 0 || g.o == 0) return {};
  const int64_t og = g.OutPerGroup();
  if (g.ci == 0) {
    std::fill(y, y + g.n * g.oh * g.ow * g.o, 0.0f);
    return {};
  }
  const int64_t strip = g.kw * g.ci;  // floats in one L row
  const Banding banding = MakeBanding(g, parallel.NumThreads());
  const int64_t chunks = g.n * g.groups * banding.bands;
  const int64_t workers = WorkerCount(parallel, chunks);
  Workspace<float> lowered;
  std::string err = lowered.Allocate(CheckedBytes(workers, banding.band_floats), "the MEC bands");
  if (!err.empty()) return err;

  ForEachChunk(parallel, chunks, workers, [&](int64_t chunk, int64_t worker) {
    const int64_t band = chunk % banding.bands;
    const int64_t grp = (chunk / banding.bands) % g.groups;
    const int64_t n = chunk / (banding.bands * g.groups);
    const int64_t oh0 = band * banding.rows, oh1 = std::min(g.oh, oh0 + banding.rows);
    float* l = lowered.data() + worker * banding.band_floats;
    // Lower the padded rows this band reads: hp = oh0*SH + r.
    const int64_t needed = (oh1 - 1 - oh0) * g.sh + (g.kh - 1) * g.dh + 1;
    for (int64_t r = 0; r < needed; ++r) {
      const int64_t ih = oh0 * g.sh + r - g.pad_top;
      float* row = l + ((r % g.sh) * banding.phase_rows + r / g.sh) * g.ow * strip;
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        for (int64_t kw = 0; kw < g.kw; ++kw, row += g.ci) {
          CopyTapChannels(g, x, n, ih, ow * g.sw - g.pad_left + kw * g.dw, grp, row);
        }
      }
    }
    // KH accumulated GEMMs over the band's output pixels. Output row oh reads padded row
    // oh*SH + kh*DH: phase (kh*DH) mod SH, row (oh - oh0) + (kh*DH) / SH within it.
    float* out = y + ((n * g.oh + oh0) * g.ow) * g.o + grp * og;
    for (int64_t kh = 0; kh < g.kh; ++kh) {
      const int64_t phase = (kh * g.dh) % g.sh, shift = (kh * g.dh) / g.sh;
      const float* a = l + (phase * banding.phase_rows + shift) * g.ow * strip;
      Sgemm((oh1 - oh0) * g.ow, og, strip, a, strip, w + kh * strip * g.o + grp * og, g.o, out, g.o,
            kh == 0 ? 0.0f : 1.0f);
    }
  });
  return {};
}

KernelSizes Sizes() { return {}; }

}  // namespace

extern const Kernel kMec = {"mec",
                            "MEC lowering along the width + KH accumulated BLAS GEMMs",
                            /*user_facing=*/true,
                            /*skips_zeros=*/false,
                            /*checks_weights=*/false,
                            /*uses_blas=*/true,
                            Supports,
                            Run,
                            Sizes,
                            /*compressed_bytes=*/nullptr,
                            /*prepared=*/nullptr};

}  // namespace jaxcps
