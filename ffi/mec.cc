// MEC (Cho & Brand, ICML 2017), baseline. Per image and group, the input is lowered along the
// width only: row ow of L holds, for every padded input row, the KW taps of that column strip
// (L is OW x Hp*KW*Ci). Output row oh is then one GEMM on the sub-matrix of L that starts
// oh*SH*KW*Ci columns in, so vertical overlaps are shared, not copied. The OH GEMMs are
// independent and run in parallel ("parallel MEC"). Kernel dilation along the height would
// break that sharing and is refused (MecSupports).
#include <algorithm>
#include <cstring>

#include "algorithms.h"
#include "blas.h"
#include "workspace.h"

namespace jaxcps {

std::string MecSupports(const ConvGeometry& g) {
  if (g.dh != 1) return "mec does not support rhs_dilation along the height";
  const int64_t hp = std::max<int64_t>(g.PaddedH(), 0);
  return CheckBlasSizes({g.ow, g.o, hp * g.kw * g.ci}, "mec");
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
  const int64_t strip = g.kw * g.ci;    // one padded row of one L row
  const int64_t lda = hp * strip;       // one L row
  const int64_t group_size = g.ow * lda;
  Workspace<float> lowered;
  std::string err = lowered.Allocate(CheckedBytes(g.groups, group_size), "the MEC matrix");
  if (!err.empty()) return err;
  const size_t chunk = static_cast<size_t>(g.ci) * sizeof(float);
  for (int64_t n = 0; n < g.n; ++n) {
    // Lower: one chunk per (group, output column).
    const int64_t lower_chunks = g.groups * g.ow;
    ForEachChunk(parallel, lower_chunks, WorkerCount(parallel, lower_chunks),
                 [&](int64_t t, int64_t) {
      const int64_t grp = t / g.ow, ow = t % g.ow;
      float* row = lowered.data() + grp * group_size + ow * lda;
      for (int64_t r = 0; r < hp; ++r) {
        const int64_t ih = r - g.pad_top;
        for (int64_t kw = 0; kw < g.kw; ++kw, row += g.ci) {
          const int64_t iw = ow * g.sw - g.pad_left + kw * g.dw;
          if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) {
            std::memset(row, 0, chunk);
          } else {
            std::memcpy(row, x + ((n * g.h + ih) * g.w + iw) * g.c + grp * g.ci, chunk);
          }
        }
      }
    });
    // One GEMM per (group, output row): OW x og = [OW x KH*KW*Ci] * [KH*KW*Ci x og].
    const int64_t gemm_chunks = g.groups * g.oh;
    ForEachChunk(parallel, gemm_chunks, WorkerCount(parallel, gemm_chunks),
                 [&](int64_t t, int64_t) {
      const int64_t grp = t / g.oh, oh = t % g.oh;
      const float* a = lowered.data() + grp * group_size + oh * g.sh * strip;
      float* out = y + ((n * g.oh + oh) * g.ow) * g.o + grp * og;
      Sgemm(g.ow, og, g.kh * strip, a, lda, w + grp * og, g.o, out, g.o);
    });
  }
  return {};
}

}  // namespace jaxcps
