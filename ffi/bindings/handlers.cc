// XLA FFI handlers: decode buffers and attributes into a ConvGeometry, check them again (the
// Python side validated first), and run the algorithm on XLA's intra-op thread pool. Every
// failure is returned as an ffi::Error; nothing throws or aborts across the FFI boundary.
//
// Operands: x f32[N,H,W,C], w f32[KH,KW,Ci,O]; result y f32[N,OH,OW,O]. Attributes:
//   window_strides int64[2], padding int64[4] (top, bottom, left, right),
//   rhs_dilation int64[2], feature_group_count int64.
// Shapes come from the buffers, never from attributes (attributes go stale under vmap).
// jaxcps_prepared_f32, the one handler for prepared weights (Kernel::prepared), also takes them,
// f32[n], and the attributes "algorithm" and "layout"; weights prepared in another layout (for
// another tile width: an exported program run on another CPU) are ignored, and the kernel packs
// w itself.
//
// CPO, CPS and sparse_direct skip zero activations, padding included, which changes one result:
// where a zero meets a NaN or infinite weight, dense convolution (lax) gives NaN and a skipped
// product gives nothing. So when any weight is non-finite they run im2col instead, which multiplies
// every activation and padding zero as lax does. CPO and sparse_direct find such weights while
// they pack them (Kernel::checks_weights); for CPS the handler scans the weights first, one
// vectorized pass, in parallel parts for large ones (AnyNonFinite).
#include "bindings/handlers.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <new>

#include "kernels/kernel.h"
#include "runtime/finite.h"
#include "runtime/pages.h"

namespace ffi = xla::ffi;

namespace jaxcps {

namespace {

using F32Rank4 = ffi::Buffer<ffi::F32, 4>;
using F32Rank4Result = ffi::ResultBuffer<ffi::F32, 4>;
using F32Rank1 = ffi::Buffer<ffi::F32, 1>;
using Int64Span = ffi::Span<const int64_t>;

// Parallel on XLA's FFI thread pool. The caller schedules n-1 helpers and then works too;
// it waits only for tasks that some thread has already started, so it finishes even if the
// pool runs nothing, runs tasks inline, or runs them late.
class PoolParallel final : public Parallel {
 public:
  explicit PoolParallel(ffi::ThreadPool pool) : pool_(pool) {}

  int64_t NumThreads() const override { return std::max<int64_t>(1, pool_.num_threads()); }

  void For(int64_t n, const std::function<void(int64_t)>& task) override {
    if (n <= 1 || pool_.num_threads() <= 1) {
      for (int64_t i = 0; i < n; ++i) task(i);
      return;
    }
    struct State {
      std::atomic<int64_t> next{0};
      std::atomic<int64_t> done{0};
      int64_t n = 0;
      const std::function<void(int64_t)>* task = nullptr;
      std::mutex mu;
      std::condition_variable cv;
    };
    auto state = std::make_shared<State>();
    state->n = n;
    state->task = &task;
    // Runs tasks until none is left. A task index is taken only while some are left, so
    // `task` (owned by the caller, who waits for every taken index) is still alive.
    auto drain = [](State& s) {
      for (int64_t i = s.next.fetch_add(1); i < s.n; i = s.next.fetch_add(1)) {
        (*s.task)(i);
        if (s.done.fetch_add(1) + 1 == s.n) {
          std::lock_guard<std::mutex> lock(s.mu);
          s.cv.notify_all();
        }
      }
    };
    const int64_t helpers = std::min<int64_t>(n, pool_.num_threads()) - 1;
    try {
      for (int64_t h = 0; h < helpers; ++h) pool_.Schedule([state, drain] { drain(*state); });
    } catch (...) {
      // Could not queue a helper (out of memory): the tasks still run, on fewer threads.
    }
    drain(*state);
    std::unique_lock<std::mutex> lock(state->mu);
    state->cv.wait(lock, [&] { return state->done.load() == n; });
  }

 private:
  ffi::ThreadPool pool_;
};

// Fills g from x, w's dimensions wd and the attributes (not yet derived or checked).
ffi::Error DecodeGeometry(const F32Rank4& x, Int64Span wd, Int64Span strides, Int64Span padding,
                          Int64Span dilation, int64_t groups, ConvGeometry* g) {
  if (strides.size() != 2) return ffi::Error::InvalidArgument("window_strides must have 2 entries");
  if (padding.size() != 4) return ffi::Error::InvalidArgument("padding must have 4 entries");
  if (dilation.size() != 2) return ffi::Error::InvalidArgument("rhs_dilation must have 2 entries");
  const auto xd = x.dimensions();
  g->n = xd[0], g->h = xd[1], g->w = xd[2], g->c = xd[3];
  g->kh = wd[0], g->kw = wd[1], g->ci = wd[2], g->o = wd[3];
  g->sh = strides[0], g->sw = strides[1];
  g->pad_top = padding[0], g->pad_bottom = padding[1];
  g->pad_left = padding[2], g->pad_right = padding[3];
  g->dh = dilation[0], g->dw = dilation[1];
  g->groups = groups;
  return ffi::Error::Success();
}

ffi::Error CheckOutput(const ConvGeometry& geometry, F32Rank4Result& y) {
  const ConvGeometry* g = &geometry;
  const auto yd = y->dimensions();
  if (yd[0] != g->n || yd[1] != g->oh || yd[2] != g->ow || yd[3] != g->o) {
    return ffi::Error::InvalidArgument(
        "output buffer shape (" + std::to_string(yd[0]) + ", " + std::to_string(yd[1]) + ", " +
        std::to_string(yd[2]) + ", " + std::to_string(yd[3]) +
        ") does not match the convolution (" + std::to_string(g->n) + ", " + std::to_string(g->oh) +
        ", " + std::to_string(g->ow) + ", " + std::to_string(g->o) + ")");
  }
  return ffi::Error::Success();
}

// True if any of the count floats is NaN or infinite: large weights (3x3x512x512: 9.4 MB) in
// parallel parts, so the scan stays a small share of the short calls on small maps that such
// weights come with.
bool AnyNonFinite(const float* values, int64_t count, Parallel& parallel) {
  constexpr int64_t kPart = int64_t{1} << 18;  // floats: below this, one part
  const int64_t parts = (count + kPart - 1) / kPart;
  if (parts <= 1) return RowsNonFinite(values, 1, count, count);
  std::atomic<bool> found{false};
  ForEachChunk(parallel, parts, WorkerCount(parallel, parts), [&](int64_t part, int64_t) {
    if (found.load(std::memory_order_relaxed)) return;
    const int64_t begin = part * kPart;
    const int64_t len = std::min(kPart, count - begin);
    if (RowsNonFinite(values + begin, 1, len, len)) found.store(true);
  });
  return found.load();
}

// Decodes and checks a call: g derived and accepted by `kernel`, y of g's output shape.
ffi::Error Setup(const Kernel& kernel, const F32Rank4& x, Int64Span wd, Int64Span strides,
                 Int64Span padding, Int64Span dilation, int64_t groups, F32Rank4Result& y,
                 ConvGeometry* g) {
  ffi::Error status = DecodeGeometry(x, wd, strides, padding, dilation, groups, g);
  if (status.failure()) return status;
  const std::string err = CheckKernel(kernel, g);
  if (!err.empty()) return ffi::Error::InvalidArgument(err);
  return CheckOutput(*g, y);
}

// Runs `body` (which returns an error message or ""), turning exceptions and errors into an
// ffi::Error that names the kernel.
template <typename Body>
ffi::Error Guarded(const Kernel& kernel, Body body) {
  std::string err;
  try {
    err = body();
  } catch (const std::bad_alloc&) {
    err = "out of memory";
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (!err.empty()) return ffi::Error::Internal(std::string(kernel.name) + ": " + err);
  return ffi::Error::Success();
}

// XLA allocates every result anew: a large one is often fresh memory, which the kernel's first
// writes would fault in a 4 KiB page at a time (runtime/pages.h).
void AdviseOutputPages(F32Rank4Result& y) {
  AdviseHugePagesIfFresh(y->typed_data(),
                         static_cast<uint64_t>(y->element_count()) * sizeof(float));
}

ffi::Error Convolve(const Kernel& kernel, ffi::ThreadPool pool, F32Rank4 x, F32Rank4 w,
                    Int64Span strides, Int64Span padding, Int64Span dilation, int64_t groups,
                    F32Rank4Result y) {
  ConvGeometry g;
  ffi::Error status = Setup(kernel, x, w.dimensions(), strides, padding, dilation, groups, y, &g);
  if (status.failure()) return status;
  if (x.element_count() == 0) {
    // Only padding: every output is 0, as lax gives it, even where a weight is NaN or Inf.
    std::fill_n(y->typed_data(), y->element_count(), 0.0f);
    return ffi::Error::Success();
  }
  AdviseOutputPages(y);
  PoolParallel parallel(pool);
  return Guarded(kernel, [&]() -> std::string {
    const float* xd = x.typed_data();
    const float* wd = w.typed_data();
    float* yd = y->typed_data();
    // Where a weight is NaN or Inf, a kernel that skips zeros runs im2col instead: found by
    // the kernel itself (checks_weights) or by a scan here first. A kernel that checks its
    // weights but fails before it has seen them all (out of workspace) gets the scan after.
    const int64_t w_count = static_cast<int64_t>(w.element_count());
    std::string err;
    bool dense =
        kernel.skips_zeros && !kernel.checks_weights && AnyNonFinite(wd, w_count, parallel);
    if (!dense) {
      err = kernel.run(g, xd, wd, yd, parallel);
      dense = err == kNonFiniteWeights ||
              (!err.empty() && kernel.checks_weights && AnyNonFinite(wd, w_count, parallel));
    }
    if (!dense) return err;
    err = kIm2col.supports(g);
    if (!err.empty()) {
      return std::string(kNonFiniteWeights) + ", and the dense fallback cannot run: " + err;
    }
    err = kIm2col.run(g, xd, wd, yd, parallel);
    if (!err.empty())
      return std::string(kNonFiniteWeights) + ", and the dense fallback failed: " + err;
    return {};
  });
}

ffi::Error ConvolvePrepared(ffi::ThreadPool pool, F32Rank4 x, F32Rank4 w, F32Rank1 prepared,
                            std::string_view algorithm, int64_t layout, Int64Span strides,
                            Int64Span padding, Int64Span dilation, int64_t groups,
                            F32Rank4Result y) {
  const Kernel* kernel = FindKernel(std::string(algorithm));
  if (kernel == nullptr || kernel->prepared == nullptr) {
    return ffi::Error::InvalidArgument("kernel '" + std::string(algorithm) +
                                       "' takes no prepared weights");
  }
  ConvGeometry g;
  ffi::Error status = Setup(*kernel, x, w.dimensions(), strides, padding, dilation, groups, y, &g);
  if (status.failure()) return status;
  if (x.element_count() == 0) {  // only padding: every output is 0
    std::fill_n(y->typed_data(), y->element_count(), 0.0f);
    return ffi::Error::Success();
  }
  AdviseOutputPages(y);
  PoolParallel parallel(pool);
  bool stale = false;
  status = Guarded(*kernel, [&] {
    std::string err = kernel->prepared->run(g, x.typed_data(), prepared.typed_data(),
                                            static_cast<int64_t>(prepared.element_count()), layout,
                                            y->typed_data(), parallel);
    stale = err == kStalePreparedWeights;
    return stale ? std::string() : err;
  });
  // Prepared for another instruction set (a program compiled before an ISA switch, or
  // exported and run on another CPU): the kernel packs w itself, as if never prepared.
  if (stale) return Convolve(*kernel, pool, x, w, strides, padding, dilation, groups, y);
  return status;
}

}  // namespace

template <const Kernel& kKernel>
ffi::Error ConvolveWith(ffi::ThreadPool pool, F32Rank4 x, F32Rank4 w, Int64Span strides,
                        Int64Span padding, Int64Span dilation, int64_t groups, F32Rank4Result y) {
  return Convolve(kKernel, pool, x, w, strides, padding, dilation, groups, y);
}

#define JAXCPS_KERNEL(Name)                                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(Ffi##Name, ConvolveWith<k##Name>,         \
                                ffi::Ffi::Bind()                          \
                                    .Ctx<ffi::ThreadPool>()               \
                                    .Arg<F32Rank4>() /* x */              \
                                    .Arg<F32Rank4>() /* w */              \
                                    .Attr<Int64Span>("window_strides")    \
                                    .Attr<Int64Span>("padding")           \
                                    .Attr<Int64Span>("rhs_dilation")      \
                                    .Attr<int64_t>("feature_group_count") \
                                    .Ret<F32Rank4>() /* y */);
#include "kernels/kernels.inc"
#undef JAXCPS_KERNEL

XLA_FFI_DEFINE_HANDLER_SYMBOL(FfiPrepared, ConvolvePrepared,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32Rank4>() /* x */
                                  .Arg<F32Rank4>() /* w */
                                  .Arg<F32Rank1>() /* prepared weights */
                                  .Attr<std::string_view>("algorithm")
                                  .Attr<int64_t>("layout")
                                  .Attr<Int64Span>("window_strides")
                                  .Attr<Int64Span>("padding")
                                  .Attr<Int64Span>("rhs_dilation")
                                  .Attr<int64_t>("feature_group_count")
                                  .Ret<F32Rank4>() /* y */);

}  // namespace jaxcps
