// MEC (Cho & Brand, ICML 2017), baseline: lowering along the width only.
//
// Per image and group, L holds one row per (padded input row hp, output column ow): the KW
// taps of that column strip for all channels of the group (KW*Ci floats). Every input element
// is copied about KW/SW times (the horizontal overlaps) and never vertically: L has Hp*OW
// rows, the footprint of MEC's OW x Hp*KW*Ci matrix.
//
// Vertical overlaps are shared, not copied: the operand of kernel row kh is a view of L. MEC's
// paper runs one GEMM per output row (M = OW rows, K = KH*KW*Ci). BLAS packs the whole weight
// matrix on every call, which on small maps (OW = 14, 7) costs more than the GEMM, so we
// group the same products by kernel row instead: KH GEMMs, each over all OH*OW output pixels
// (M = OH*OW, K = KW*Ci), accumulated. For that, L's rows are ordered by (hp mod SH, hp / SH,
// ow): the rows that kernel row kh reads for output pixels m = oh*OW + ow are then L rows
// m + offset(kh), a plain matrix with leading dimension KW*Ci, for any stride and dilation.
// The GEMMs are split into blocks of output pixels that run in parallel.
#include <algorithm>

#include "algorithms.h"
#include "blas.h"
#include "lowering.h"
#include "workspace.h"

namespace jaxcps {

namespace {
// Output pixels per parallel GEMM block: about 4 blocks per thread, and few enough that the
// block's outputs (accumulated over KH GEMMs) stay in L2 (256 KiB), but at least 64.
int64_t BlockPixels(int64_t pixels, int64_t threads, int64_t out_channels) {
  const int64_t per_thread = (pixels + 4 * threads - 1) / (4 * threads);
  const int64_t in_l2 = (int64_t{1} << 16) / std::max<int64_t>(1, out_channels);
  return std::max<int64_t>(64, std::min(per_thread, in_l2));
}
}  // namespace

std::string MecSupports(const ConvGeometry& g) {
  return CheckBlasSizes({g.oh * g.ow, g.o, g.kw * g.ci}, "mec");
}

std::string RunMec(const ConvGeometry& g, const float* x, const float* w, float* y,
                   Parallel& parallel) {
  if (g.n == 0 || g.oh == 0 || g.ow == 0 || g.o == 0) return {};
  const int64_t og = g.OutPerGroup();
  if (g.ci == 0) {
    std::fill(y, y + g.n * g.oh * g.ow * g.o, 0.0f);
    return {};
  }
  const int64_t hp = g.PaddedH();
  const int64_t phase_rows = (hp + g.sh - 1) / g.sh;  // rows of one phase hp mod SH
  const int64_t strip = g.kw * g.ci;                   // floats in one L row
  const int64_t group_floats = g.sh * phase_rows * g.ow * strip;
  Workspace<float> lowered;
  std::string err = lowered.Allocate(CheckedBytes(g.groups, group_floats), "the MEC matrix");
  if (!err.empty()) return err;
  const int64_t pixels = g.oh * g.ow;
  const int64_t block = BlockPixels(pixels, parallel.NumThreads(), og);
  const int64_t blocks = (pixels + block - 1) / block;

  for (int64_t n = 0; n < g.n; ++n) {
    // Lower: one chunk per (group, padded input row).
    const int64_t lower_chunks = g.groups * hp;
    ForEachChunk(parallel, lower_chunks, WorkerCount(parallel, lower_chunks),
                 [&](int64_t t, int64_t) {
      const int64_t grp = t / hp, r = t % hp;
      const int64_t ih = r - g.pad_top;
      float* row = lowered.data() + grp * group_floats +
                   ((r % g.sh) * phase_rows + r / g.sh) * g.ow * strip;
      for (int64_t ow = 0; ow < g.ow; ++ow) {
        for (int64_t kw = 0; kw < g.kw; ++kw, row += g.ci) {
          CopyTapChannels(g, x, n, ih, ow * g.sw - g.pad_left + kw * g.dw, grp, row);
        }
      }
    });
    // Multiply: per (group, block of output pixels), KH accumulated GEMMs.
    const int64_t gemm_chunks = g.groups * blocks;
    ForEachChunk(parallel, gemm_chunks, WorkerCount(parallel, gemm_chunks),
                 [&](int64_t t, int64_t) {
      const int64_t grp = t / blocks;
      const int64_t m0 = (t % blocks) * block, m1 = std::min(pixels, m0 + block);
      const float* l = lowered.data() + grp * group_floats;
      float* out = y + (n * pixels + m0) * g.o + grp * og;
      for (int64_t kh = 0; kh < g.kh; ++kh) {
        // Output row oh reads padded row oh*SH + kh*DH: phase (kh*DH) mod SH, row
        // oh + (kh*DH) / SH within it.
        const int64_t phase = (kh * g.dh) % g.sh, shift = (kh * g.dh) / g.sh;
        const float* a = l + ((phase * phase_rows + shift) * g.ow + m0) * strip;
        Sgemm(m1 - m0, og, strip, a, strip, w + kh * strip * g.o + grp * og, g.o, out, g.o,
              kh == 0 ? 0.0f : 1.0f);
      }
    });
  }
  return {};
}

}  // namespace jaxcps
