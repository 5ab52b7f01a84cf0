// Parallel: the one interface through which kernels run work on several threads.
// Kernels see only this; bindings/handlers.cc implements it on XLA's FFI thread pool, and
// SerialParallel runs everything on the calling thread (tests, tools).
#ifndef JAXCPS_RUNTIME_PARALLEL_H_
#define JAXCPS_RUNTIME_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>

namespace jaxcps {

// A hint to the core that this thread is spinning (frees resources for its SMT sibling).
inline void SpinPause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

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

// Two phases in one parallel region: first(task, worker) for every task in [0, tasks), then,
// once all have returned, between() once, then body(chunk, worker) for every chunk in
// [0, chunks), on at most `workers` concurrent workers. One region instead of two spares the
// second hand-off to the pool (a helper woken 15-100 us after it is asked for, docs/design.md
// section 5): a helper that arrives late joins whichever phase is running. A worker that runs
// out of tasks spins until the tasks taken by others have returned; only running workers take
// tasks, so it never waits for one that has not started, and a pool that runs its tasks one
// after another still finishes.
template <typename First, typename Between, typename Body>
void ForEachChunkAfter(Parallel& parallel, int64_t tasks, First&& first, Between&& between,
                       int64_t chunks, int64_t workers, Body&& body) {
  workers = std::max<int64_t>(1, std::min(workers, std::max(tasks, chunks)));
  std::atomic<int64_t> next_task{0}, tasks_done{0}, next_chunk{0};
  std::atomic<bool> ready{tasks == 0};
  if (tasks == 0) between();
  parallel.For(workers, [&](int64_t worker) {
    for (int64_t t = next_task.fetch_add(1); t < tasks; t = next_task.fetch_add(1)) {
      first(t, worker);
      if (tasks_done.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks) {
        between();
        ready.store(true, std::memory_order_release);
      }
    }
    // Spin while the wait is short; yield the core if it is not (more threads than cores).
    for (int spins = 0; !ready.load(std::memory_order_acquire); ++spins) {
      if (spins < 4096) {
        SpinPause();
      } else {
        std::this_thread::yield();
      }
    }
    for (int64_t chunk = next_chunk.fetch_add(1); chunk < chunks; chunk = next_chunk.fetch_add(1)) {
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
