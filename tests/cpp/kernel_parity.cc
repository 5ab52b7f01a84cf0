// Kernel parity without Python or JAX: every kernel of AllKernels() that accepts a case is
// compared with the naive reference kernel over a grid of convolutions (kernel shapes,
// strides, paddings negative and asymmetric included, dilations, groups up to depthwise,
// output channels around the tile sizes 16/64/128, tiny and odd shapes, zero fractions from 0
// to 100%, dead channels, runs of zeros). Inputs come from a fixed-seed generator, so a
// failure reproduces exactly. Each kernel runs on the calling thread (SerialParallel) and on a
// small std::thread pool; a kernel that takes prepared weights runs with them too. The kernels
// that check their weights for NaN/Inf themselves must find a non-finite weight at any
// position, and preparing weights must refuse one.
//
// Usage: kernel_parity            exit status 0 when every kernel matches, 1 otherwise
// The sparse kernels run on the instruction set that JAXCPS_ISA names (default: the best this
// CPU supports); the report's first line names it. Runs natively from tests/test_cpp_parity.py
// and under qemu-user from tools/check_aarch64.sh.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "geometry.h"
#include "kernels/kernel.h"
#include "runtime/isa.h"
#include "runtime/parallel.h"

namespace jaxcps {
namespace {

// Parallel on threads started per call: the caller and threads-1 helpers take task indices
// from a shared counter.
class ThreadParallel final : public Parallel {
 public:
  explicit ThreadParallel(int64_t threads) : threads_(threads) {}
  int64_t NumThreads() const override { return threads_; }
  void For(int64_t n, const std::function<void(int64_t)>& task) override {
    std::atomic<int64_t> next{0};
    auto drain = [&] {
      for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) task(i);
    };
    std::vector<std::thread> helpers;
    for (int64_t t = 1; t < std::min(threads_, n); ++t) helpers.emplace_back(drain);
    drain();
    for (std::thread& helper : helpers) helper.join();
  }

 private:
  int64_t threads_;
};

// SplitMix64: small, fast, and the same sequence on every platform.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  float Uniform(float lo, float hi) { return lo + static_cast<float>(Uniform()) * (hi - lo); }

 private:
  uint64_t state_;
};

enum class Zeros { kScattered, kRuns };

struct Case {
  ConvGeometry g;
  double zero_fraction = 0.5;
  int64_t dead_channels = 0;  // the first channels of every pixel are zero
  Zeros zeros = Zeros::kScattered;

  std::string Describe() const {
    auto join = [](std::initializer_list<int64_t> values, const char* separator) {
      std::string text;
      for (int64_t v : values) text += (text.empty() ? "" : separator) + std::to_string(v);
      return text;
    };
    char zeros_text[32];
    std::snprintf(zeros_text, sizeof(zeros_text), "%.2f", zero_fraction);
    return "x " + join({g.n, g.h, g.w, g.c}, "x") + " w " + join({g.kh, g.kw, g.ci, g.o}, "x") +
           " strides (" + join({g.sh, g.sw}, ", ") + ") padding (" +
           join({g.pad_top, g.pad_bottom, g.pad_left, g.pad_right}, ", ") + ") dilation (" +
           join({g.dh, g.dw}, ", ") + ") groups " + std::to_string(g.groups) + " zeros " +
           zeros_text + (zeros == Zeros::kRuns ? " in runs" : "") + " dead channels " +
           std::to_string(dead_channels);
  }
};

// A ReLU-like NHWC activation: non-zeros in [0.1, 2), each entry zero with probability
// zero_fraction (so 1 gives all zeros), either independently or in runs along the width
// (which CPS compresses), and dead channels zero everywhere.
std::vector<float> Activation(const Case& k, Random& rng) {
  const ConvGeometry& g = k.g;
  std::vector<float> x(static_cast<size_t>(g.n * g.h * g.w * g.c));
  for (int64_t row = 0; row < g.n * g.h; ++row) {
    for (int64_t ch = 0; ch < g.c; ++ch) {
      bool zero = rng.Uniform() < k.zero_fraction;
      for (int64_t q = 0; q < g.w; ++q) {
        if (k.zeros == Zeros::kScattered) {
          zero = rng.Uniform() < k.zero_fraction;
        } else if (rng.Uniform() < 0.25) {  // a new draw every 4 columns on average
          zero = rng.Uniform() < k.zero_fraction;
        }
        const float v = rng.Uniform(0.1f, 2.0f);
        x[static_cast<size_t>((row * g.w + q) * g.c + ch)] =
            zero || ch < k.dead_channels ? 0.0f : v;
      }
    }
  }
  return x;
}

std::vector<float> Weights(const ConvGeometry& g, Random& rng) {
  std::vector<float> w(static_cast<size_t>(g.kh * g.kw * g.ci * g.o));
  for (float& v : w) v = rng.Uniform(-1.0f, 1.0f);
  return w;
}

struct Totals {
  int64_t cases = 0, runs = 0, refused = 0, mismatches = 0;
};

// A kernel's run on `parallel` into y: its error message, or "".
using Run = std::function<std::string(Parallel& parallel, float* y)>;

// Runs `run` (kernel `name`) and compares with `expected`: max |y - expected| <= 1e-4 *
// max(max|expected|, 1). y starts as NaN, so an output the kernel does not write fails too.
void Check(const std::string& name, const Run& run, const Case& k,
           const std::vector<float>& expected, Parallel& parallel, const char* threading,
           Totals* totals) {
  std::vector<float> y(expected.size(), std::numeric_limits<float>::quiet_NaN());
  const std::string err = run(parallel, y.data());
  ++totals->runs;
  if (!err.empty()) {
    ++totals->mismatches;
    std::printf("FAIL %s (%s): error '%s'; %s\n", name.c_str(), threading, err.c_str(),
                k.Describe().c_str());
    return;
  }
  double scale = 1.0, worst = 0.0;
  size_t at = 0;
  for (float e : expected) scale = std::max(scale, std::fabs(static_cast<double>(e)));
  for (size_t i = 0; i < y.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(y[i]) - expected[i]);
    if (!(diff <= worst)) {  // NaN counts as the worst
      worst = std::isnan(diff) ? std::numeric_limits<double>::infinity() : diff;
      at = i;
    }
  }
  if (worst <= 1e-4 * scale) return;
  ++totals->mismatches;
  const int64_t flat = static_cast<int64_t>(at), o = flat % k.g.o, ow = flat / k.g.o % k.g.ow;
  const int64_t oh = flat / (k.g.o * k.g.ow) % k.g.oh, n = flat / (k.g.o * k.g.ow * k.g.oh);
  const std::string index = std::to_string(n) + ", " + std::to_string(oh) + ", " +
                            std::to_string(ow) + ", " + std::to_string(o);
  std::printf("FAIL %s (%s): max abs error %.3g > %.3g at y[%s]: got %.9g, expected %.9g; %s\n",
              name.c_str(), threading, worst, 1e-4 * scale, index.c_str(), y[at], expected[at],
              k.Describe().c_str());
}

void RunCase(const Case& k, uint64_t seed, Totals* totals) {
  ++totals->cases;
  Random rng(seed);
  const std::vector<float> x = Activation(k, rng);
  const std::vector<float> w = Weights(k.g, rng);
  std::vector<float> expected(static_cast<size_t>(k.g.n * k.g.oh * k.g.ow * k.g.o));
  SerialParallel serial;
  ThreadParallel threads(3);
  const std::string err = kReference.run(k.g, x.data(), w.data(), expected.data(), serial);
  if (!err.empty()) {
    ++totals->mismatches;
    std::printf("FAIL reference: error '%s'; %s\n", err.c_str(), k.Describe().c_str());
    return;
  }
  for (const Kernel* kernel : AllKernels()) {
    if (kernel == &kReference) continue;
    ConvGeometry g = k.g;
    if (!CheckKernel(*kernel, &g).empty()) {
      ++totals->refused;
      continue;
    }
    const Run run = [&](Parallel& parallel, float* y) {
      return kernel->run(k.g, x.data(), w.data(), y, parallel);
    };
    Check(kernel->name, run, k, expected, serial, "1 thread", totals);
    Check(kernel->name, run, k, expected, threads, "3 threads", totals);
    if (kernel->prepared == nullptr) continue;
    // Prepared weights, NaN where `prepare` should write: a float it leaves is caught.
    std::vector<float> prepared(static_cast<size_t>(kernel->prepared->floats(g)),
                                std::numeric_limits<float>::quiet_NaN());
    const std::string name = std::string(kernel->name) + " prepared";
    if (!kernel->prepared->prepare(g, w.data(), prepared.data())) {
      ++totals->mismatches;
      std::printf("FAIL %s: finite weights refused; %s\n", name.c_str(), k.Describe().c_str());
      continue;
    }
    const int64_t layout = kernel->prepared->layout();
    const Run run_prepared = [&](Parallel& parallel, float* y) {
      return kernel->prepared->run(k.g, x.data(), prepared.data(),
                                   static_cast<int64_t>(prepared.size()), layout, y, parallel);
    };
    Check(name, run_prepared, k, expected, serial, "1 thread", totals);
    Check(name, run_prepared, k, expected, threads, "3 threads", totals);
  }
}

// Kernel::prepared->prepare must refuse weights with a NaN or infinite weight at any position
// and accept them when every weight is finite.
void CheckPrepareRefuses(const Kernel& kernel, const ConvGeometry& g, std::vector<float>* w,
                         const float (&poisons)[3], Totals* totals) {
  std::vector<float> prepared(static_cast<size_t>(kernel.prepared->floats(g)));
  for (size_t at = 0; at <= w->size(); ++at) {
    const float kept = at < w->size() ? (*w)[at] : 0.0f;
    if (at < w->size()) (*w)[at] = poisons[at % 3];
    const bool accepted = kernel.prepared->prepare(g, w->data(), prepared.data());
    if (at < w->size()) (*w)[at] = kept;
    ++totals->runs;
    if (accepted == (at == w->size())) continue;
    ++totals->mismatches;
    std::printf("FAIL %s prepare: weight %zu of %zu %s: %s\n", kernel.name, at, w->size(),
                at < w->size() ? "non-finite" : "(none non-finite)",
                accepted ? "accepted" : "refused");
    return;
  }
}

// A case with its weights' in-channels and its output shape derived.
Case Make(int64_t n, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw, int64_t o,
          int64_t sh = 1, int64_t sw = 1, std::vector<int64_t> pad = {0, 0, 0, 0}, int64_t dh = 1,
          int64_t dw = 1, int64_t groups = 1) {
  Case k;
  ConvGeometry& g = k.g;
  g.n = n, g.h = h, g.w = w, g.c = c;
  g.kh = kh, g.kw = kw, g.ci = c / groups, g.o = o;
  g.sh = sh, g.sw = sw;
  g.pad_top = pad[0], g.pad_bottom = pad[1], g.pad_left = pad[2], g.pad_right = pad[3];
  g.dh = dh, g.dw = dw;
  g.groups = groups;
  return k;
}

Case WithZeros(Case k, double fraction, Zeros zeros = Zeros::kScattered, int64_t dead = 0) {
  k.zero_fraction = fraction;
  k.zeros = zeros;
  k.dead_channels = dead;
  return k;
}

std::vector<Case> Grid() {
  std::vector<Case> cases;
  // Kernel shapes x strides x paddings: VALID, SAME-like, asymmetric, negative on one side of
  // each axis, and wider than the kernel.
  const int64_t kernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {1, 7}, {7, 1}, {2, 4}};
  const int64_t strides[][2] = {{1, 1}, {2, 2}, {1, 3}};
  for (const auto& kk : kernels) {
    const int64_t kh = kk[0], kw = kk[1];
    const std::vector<int64_t> paddings[] = {{0, 0, 0, 0},
                                             {(kh - 1) / 2, kh / 2, (kw - 1) / 2, kw / 2},
                                             {0, 2, 1, 0},
                                             {-1, 1, 2, -2},
                                             {kh + 1, 0, 0, kw + 2}};
    for (const auto& s : strides) {
      for (const auto& pad : paddings) {
        cases.push_back(Make(2, 9, 11, 5, kh, kw, 7, s[0], s[1], pad));
      }
    }
  }
  // Zero fractions, scattered and in runs, with and without dead channels, on channel counts
  // around CPO's channel blocks (4 to 64).
  for (int64_t c : {3, 4, 63, 64, 65}) {
    for (double zeros : {0.0, 0.3, 0.7, 0.95, 1.0}) {
      const Case k = Make(1, 7, 9, c, 3, 3, 20, 1, 1, {1, 1, 1, 1});
      cases.push_back(WithZeros(k, zeros));
      cases.push_back(WithZeros(k, zeros, Zeros::kRuns, c / 3));
    }
  }
  // Output channels around the vector (16) and tile (64, 128) widths, stride 1 and 2.
  for (int64_t o : {1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 130}) {
    cases.push_back(Make(1, 6, 7, 8, 3, 3, o, 1, 1, {1, 1, 1, 1}));
    cases.push_back(Make(1, 6, 7, 8, 3, 3, o, 2, 2, {0, 1, 1, 0}));
  }
  // Groups: grouped, depthwise, depthwise with a channel multiplier, and per-group output
  // widths around the tiles.
  cases.push_back(Make(2, 7, 8, 8, 3, 3, 12, 1, 1, {1, 1, 1, 1}, 1, 1, 2));
  cases.push_back(Make(1, 7, 8, 12, 3, 3, 12, 1, 1, {1, 1, 1, 1}, 1, 1, 4));
  cases.push_back(Make(2, 7, 8, 8, 3, 3, 8, 1, 1, {1, 1, 1, 1}, 1, 1, 8));
  cases.push_back(Make(1, 9, 9, 6, 5, 5, 12, 2, 2, {2, 2, 2, 2}, 1, 1, 6));
  for (int64_t og : {17, 64, 65}) {
    cases.push_back(Make(1, 5, 6, 6, 3, 3, 2 * og, 1, 1, {1, 1, 1, 1}, 1, 1, 2));
  }
  // Dilation along either axis and both, with strides.
  for (const auto& d : {std::pair<int64_t, int64_t>{2, 1}, {1, 3}, {2, 2}}) {
    cases.push_back(Make(1, 11, 12, 6, 3, 3, 9, 1, 1, {2, 2, 2, 2}, d.first, d.second));
    cases.push_back(Make(1, 11, 12, 6, 2, 4, 9, 2, 1, {0, 1, 3, 0}, d.first, d.second));
  }
  // Each kernel's tiles and blocks (Kernel::sizes: for the active instruction set) from one
  // below to one above, along the width, the input channels and the output channels.
  for (const Kernel* kernel : AllKernels()) {
    for (const auto& [name, size] : kernel->sizes()) {
      if (size > 256) continue;  // a limit (max_width, ...), not a tile
      for (int64_t v : {size - 1, size, size + 1}) {
        if (v < 1) continue;
        cases.push_back(Make(1, 5, v, 6, 3, 3, 10, 1, 1, {1, 1, 1, 1}));
        cases.push_back(Make(1, 5, 6, v, 3, 3, 10, 1, 1, {1, 1, 1, 1}));
        cases.push_back(Make(1, 5, 6, 6, 3, 3, v, 1, 1, {1, 1, 1, 1}));
      }
    }
  }
  // Tiny and odd shapes: a 1x1 image, a kernel larger than the image (no output), one row,
  // one column, one channel, an empty batch, no input channels, padding only.
  cases.push_back(Make(1, 1, 1, 1, 1, 1, 1));
  cases.push_back(Make(1, 1, 1, 3, 3, 3, 5, 1, 1, {1, 1, 1, 1}));
  cases.push_back(Make(1, 2, 2, 3, 3, 3, 5));
  cases.push_back(Make(3, 1, 130, 2, 1, 3, 4, 1, 2, {0, 0, 1, 1}));
  cases.push_back(Make(2, 40, 1, 3, 5, 1, 6, 3, 1, {2, 2, 0, 0}));
  cases.push_back(Make(1, 5, 5, 1, 3, 3, 1, 1, 1, {1, 1, 1, 1}));
  cases.push_back(Make(0, 5, 5, 4, 3, 3, 8, 1, 1, {1, 1, 1, 1}));
  cases.push_back(Make(1, 5, 5, 0, 3, 3, 8, 1, 1, {1, 1, 1, 1}));
  cases.push_back(Make(1, 3, 3, 2, 3, 3, 4, 1, 1, {-4, 2, -3, 1}));
  cases.push_back(Make(2, 13, 17, 7, 3, 5, 19, 3, 2, {1, 2, 0, 3}));
  return cases;
}

// Kernels that check their weights for NaN/Inf themselves (checks_weights) must find one
// wherever it is. For a few layers (two groups, one with dead channels and one all zero, so
// dead blocks for CPO; output tiles with a narrow last one; several bands, one of them empty
// on 3 threads), a NaN, +Inf or -Inf is put at each weight position in turn (every position on
// 1 thread, every fifth on 3 threads): `run` must return kNonFiniteWeights, and "" with every
// weight finite.
void CheckNonFiniteWeightsFound(Totals* totals) {
  struct Layer {
    Case k;
    int64_t dead_group;  // a group whose input is zero everywhere, or -1
  };
  const Layer layers[] = {
      {WithZeros(Make(2, 5, 6, 18, 1, 3, 140, 1, 1, {0, 0, 1, 1}, 1, 1, 2), 0.5, Zeros::kScattered,
                 2),
       1},
      {WithZeros(Make(1, 5, 4, 6, 1, 3, 130, 1, 1, {0, 0, 1, 1}), 0.6), -1},
  };
  const float poisons[] = {std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity()};
  SerialParallel serial;
  ThreadParallel threads(3);
  uint64_t seed = 1000;
  for (Layer layer : layers) {
    Case& k = layer.k;
    k.g.Derive();
    Random rng(seed++);
    std::vector<float> x = Activation(k, rng);
    std::vector<float> w = Weights(k.g, rng);
    if (layer.dead_group >= 0) {
      for (int64_t pixel = 0; pixel < k.g.n * k.g.h * k.g.w; ++pixel) {
        for (int64_t c = 0; c < k.g.ci; ++c) x[pixel * k.g.c + layer.dead_group * k.g.ci + c] = 0;
      }
    }
    std::vector<float> y(static_cast<size_t>(k.g.n * k.g.oh * k.g.ow * k.g.o));
    for (const Kernel* kernel : AllKernels()) {
      if (kernel->prepared != nullptr) CheckPrepareRefuses(*kernel, k.g, &w, poisons, totals);
      if (!kernel->checks_weights) continue;
      bool failed = false;                                    // one report per kernel and layer
      for (size_t at = 0; at <= w.size() && !failed; ++at) {  // w.size(): every weight finite
        for (Parallel* parallel : std::initializer_list<Parallel*>{&serial, &threads}) {
          if (parallel == &threads && at % 5 != 0 && at != w.size()) continue;
          const float kept = at < w.size() ? w[at] : 0.0f;
          if (at < w.size()) w[at] = poisons[at % 3];
          const std::string err = kernel->run(k.g, x.data(), w.data(), y.data(), *parallel);
          if (at < w.size()) w[at] = kept;
          ++totals->runs;
          const std::string want = at < w.size() ? kNonFiniteWeights : "";
          if (err == want) continue;
          ++totals->mismatches;
          std::printf("FAIL %s (%lld threads): weight %zu of %zu %s: got '%s'; %s\n", kernel->name,
                      static_cast<long long>(parallel->NumThreads()), at, w.size(),
                      at < w.size() ? "non-finite" : "(none non-finite)", err.c_str(),
                      k.Describe().c_str());
          failed = true;
          break;
        }
      }
    }
  }
}

int Main() {
  std::printf("kernel_parity: sparse kernels on %s (this build has", ActiveSparseKernels().isa);
  for (const std::string& isa : CompiledIsas()) std::printf(" %s", isa.c_str());
  std::printf(")\n");
  Totals totals;
  uint64_t seed = 1;
  for (Case& k : Grid()) {
    const std::string err = k.g.Derive();
    if (!err.empty()) {
      std::printf("FAIL: the grid holds an invalid case (%s); %s\n", err.c_str(),
                  k.Describe().c_str());
      return 1;
    }
    RunCase(k, seed++, &totals);
  }
  CheckNonFiniteWeightsFound(&totals);
  std::printf("kernel_parity: %s cases, %s kernel runs, %s refused by a kernel, %s mismatches\n",
              std::to_string(totals.cases).c_str(), std::to_string(totals.runs).c_str(),
              std::to_string(totals.refused).c_str(), std::to_string(totals.mismatches).c_str());
  return totals.mismatches == 0 ? 0 : 1;
}

}  // namespace
}  // namespace jaxcps

int main() { return jaxcps::Main(); }
