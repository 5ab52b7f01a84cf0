// im2col + GEMM (baseline). Each output pixel's receptive field, padding zeros included, is
// copied into a row of the lowered matrix (OH*OW x KH*KW*Ci per image and group), then one
// BLAS GEMM per block multiplies it with the (KH*KW*Ci x O/groups) weight matrix. The lowered
// matrix is built and consumed in blocks of rows, one block per worker at a time, so it stays
// in cache; its footprint is still counted whole (jaxcps.footprint).
#include <algorithm>

#include "kernels/kernel.h"
#include "kernels/lowering.h"
#include "runtime/blas.h"
#include "runtime/workspace.h"

namespace jaxcps {

namespace {

constexpr int64_t kMinBlockRows = 16;

// Rows of the lowered matrix per block: at most about 2 MiB of it, few enough that every
// thread gets blocks (about 2 each) on small maps, and at least 16.
int64_t BlockRows(int64_t m, int64_t k, int64_t threads) {
  const int64_t in_cache = (int64_t{1} << 19) / std::max<int64_t>(1, k);
  const int64_t per_thread = (m + 2 * threads - 1) / (2 * threads);
  return std::max<int64_t>(kMinBlockRows, std::min(in_cache, per_thread));
}

// Writes lowered rows [m0, m1) of image n, group grp into a (row stride k).
void LowerRows(const ConvGeometry& g, const float* x, int64_t n, int64_t grp, int64_t m0,
               int64_t m1, float* a) {
  for (int64_t m = m0; m < m1; ++m) {
    const int64_t oh = m / g.ow, ow = m % g.ow;
    float* row = a + (m - m0) * g.kh * g.kw * g.ci;
    for (int64_t kh = 0; kh < g.kh; ++kh) {
      const int64_t ih = oh * g.sh - g.pad_top + kh * g.dh;
      for (int64_t kw = 0; kw < g.kw; ++kw, row += g.ci) {
        CopyTapChannels(g, x, n, ih, ow * g.sw - g.pad_left + kw * g.dw, grp, row);
      }
    }
  }
}

std::string Supports(const ConvGeometry& g) {
  return CheckBlasSizes({{"output height x width", g.oh * g.ow},
                         {"output channels", g.o},
                         {"kernel height x width x input channels per group", g.kh * g.kw * g.ci}},
                        "im2col");
}

std::string Run(const ConvGeometry& g, const float* x, const float* w, float* y,
                Parallel& parallel) {
  const int64_t m = g.oh * g.ow, k = g.kh * g.kw * g.ci, og = g.OutPerGroup();
  if (m == 0 || g.n == 0 || g.o == 0) return {};
  if (k == 0) {  // no input channels: the sum over an empty set
    std::fill(y, y + g.n * m * g.o, 0.0f);
    return {};
  }
  const int64_t rows = std::min(m, BlockRows(m, k, parallel.NumThreads()));
  const int64_t blocks_per_image = (m + rows - 1) / rows;
  const int64_t chunks = g.n * g.groups * blocks_per_image;
  const int64_t workers = WorkerCount(parallel, chunks);
  Workspace<float> lowered;
  std::string err = lowered.Allocate(CheckedBytes(workers, rows * k), "the im2col blocks");
  if (!err.empty()) return err;
  ForEachChunk(parallel, chunks, workers, [&](int64_t chunk, int64_t worker) {
    const int64_t block = chunk % blocks_per_image;
    const int64_t grp = (chunk / blocks_per_image) % g.groups;
    const int64_t n = chunk / (blocks_per_image * g.groups);
    const int64_t m0 = block * rows, m1 = std::min(m, m0 + rows);
    float* a = lowered.data() + worker * rows * k;
    LowerRows(g, x, n, grp, m0, m1, a);
    Sgemm(m1 - m0, og, k, a, k, w + grp * og, g.o, y + (n * m + m0) * g.o + grp * og, g.o);
  });
  return {};
}

KernelSizes Sizes() { return {{"min_block_rows", kMinBlockRows}}; }

}  // namespace

extern const Kernel kIm2col = {"im2col",
                               "im2col lowering + one BLAS GEMM per block of rows",
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
