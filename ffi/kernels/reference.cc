// Naive direct convolution: the oracle that every fast kernel is tested against. It follows
// the definition literally (every output, every tap, every channel), in double precision.
#include <algorithm>

#include "kernels/kernel.h"

namespace jaxcps {

namespace {

std::string Supports(const ConvGeometry&) { return {}; }

std::string Run(const ConvGeometry& g, const float* x, const float* w, float* y,
                Parallel& parallel) {
  const int64_t og = g.OutPerGroup();
  const int64_t rows = g.n * g.oh;
  ForEachChunk(parallel, rows, WorkerCount(parallel, rows), [&](int64_t row, int64_t) {
    const int64_t n = row / g.oh, oh = row % g.oh;
    for (int64_t ow = 0; ow < g.ow; ++ow) {
      float* out = y + ((n * g.oh + oh) * g.ow + ow) * g.o;
      for (int64_t o = 0; o < g.o; ++o) {
        const int64_t grp = o / og;
        double sum = 0.0;
        for (int64_t kh = 0; kh < g.kh; ++kh) {
          const int64_t ih = oh * g.sh - g.pad_top + kh * g.dh;
          if (ih < 0 || ih >= g.h) continue;
          for (int64_t kw = 0; kw < g.kw; ++kw) {
            const int64_t iw = ow * g.sw - g.pad_left + kw * g.dw;
            if (iw < 0 || iw >= g.w) continue;
            const float* px = x + ((n * g.h + ih) * g.w + iw) * g.c + grp * g.ci;
            const float* wt = w + ((kh * g.kw + kw) * g.ci) * g.o + o;
            for (int64_t ci = 0; ci < g.ci; ++ci) {
              sum += static_cast<double>(px[ci]) * static_cast<double>(wt[ci * g.o]);
            }
          }
        }
        out[o] = static_cast<float>(sum);
      }
    }
  });
  return {};
}

KernelSizes Sizes() { return {}; }

}  // namespace

extern const Kernel kReference = {"reference",
                                  "naive direct convolution in double (test oracle)",
                                  /*user_facing=*/false,
                                  /*skips_zeros=*/false,
                                  /*checks_weights=*/false,
                                  /*uses_blas=*/false,
                                  Supports,
                                  Run,
                                  Sizes,
                                  /*compressed_bytes=*/nullptr,
                                  /*prepared=*/nullptr};

}  // namespace jaxcps
