// Parallel: the one interface through which kernels run work on several threads.
// Kernels see only this; bindings/handlers.cc implements it on XLA's FFI thread pool, and
// SerialParallel runs everything on the calling thread (tests, tools).
#ifndef JAXCPS_RUNTIME_PARALLEL_H_
#define JAXCPS_RUNTIME_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>

namespace jaxcps {

class Parallel {
 public:
  virtual ~Parallel() = default;
  virtual int64_t NumThreads() const = 0;
  // Calls task(i) once for every i in [0, n), possibly concurrently, and returns when all
  // calls have finished. task must not throw.
  virtual void For(int64_t n, const std::function<void(int64_t)>& task) = 0;
};

class SerialParallel final : public Parallel {
 public:
  int64_t NumThreads() const override { return 1; }
  void For(int64_t n, const std::function<void(int64_t)>& task) override {
    for (int64_t i = 0; i < n; ++i) task(i);
  }
};

// Runs body(chunk, worker) for every chunk in [0, chunks) on at most `workers` concurrent
// workers; `worker` (< workers) names per-worker scratch that the caller allocated. Chunks are
// handed out dynamically, so uneven chunks balance, and a pool that runs tasks inline still
// finishes (the first worker then takes every chunk).
template <typename Body>
void ForEachChunk(Parallel& parallel, int64_t chunks, int64_t workers, Body&& body) {
  workers = std::max<int64_t>(1, std::min(workers, chunks));
  std::atomic<int64_t> next{0};
  parallel.For(workers, [&](int64_t worker) {
    for (int64_t chunk = next.fetch_add(1); chunk < chunks; chunk = next.fetch_add(1)) {
      body(chunk, worker);
    }
  });
}

// Workers worth using for `chunks` chunks on this pool.
inline int64_t WorkerCount(const Parallel& parallel, int64_t chunks) {
  return std::max<int64_t>(1, std::min(parallel.NumThreads(), chunks));
}

}  // namespace jaxcps

#endif  // JAXCPS_RUNTIME_PARALLEL_H_
