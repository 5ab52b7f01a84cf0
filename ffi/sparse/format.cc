// Builders of the CPO and CPS compressed activations (see format.h).
#include "sparse/format.h"

#include <algorithm>

#include "runtime/isa.h"

namespace jaxcps {

namespace {


}  // namespace

std::string CheckSparseShape(int64_t w, int64_t c) {
  if (w > kMaxSparseWidth) {
    return "input width " + std::to_string(w) + " exceeds " + std::to_string(kMaxSparseWidth) +
           ", the largest that the 16-bit CPO/CPS column indices address";
  }
  if (c > kMaxSparseWidth) {
    return "input channels " + std::to_string(c) + " exceed " + std::to_string(kMaxSparseWidth) +
           ", the largest that the 16-bit CPO/CPS channel indices address";
  }
  if (w * c >= (int64_t{1} << 32)) {
    return "input width x channels = " + std::to_string(w * c) +
           " does not fit the 32-bit offsets of a CPO/CPS row";
  }
  return {};
}

namespace {

// Rows built by one task: enough work per task to amortise scheduling, enough tasks to balance.
int64_t SlotsPerTask(int64_t slots, int64_t slot_elems, int64_t threads) {
  const int64_t by_threads = std::max<int64_t>(1, slots / (8 * threads));
  const int64_t by_size = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, slot_elems));
  return std::min(by_threads, by_size);
}

template <typename BuildSlot>
void ForEachSlot(int64_t slots, int64_t slot_elems, Parallel& parallel, BuildSlot&& build) {
  const int64_t per_task = SlotsPerTask(slots, slot_elems, parallel.NumThreads());
  const int64_t tasks = (slots + per_task - 1) / per_task;
  ForEachChunk(parallel, tasks, WorkerCount(parallel, tasks), [&](int64_t t, int64_t worker) {
    const int64_t end = std::min(slots, (t + 1) * per_task);
    for (int64_t s = t * per_task; s < end; ++s) build(s, worker);
  });
}

}  // namespace

int64_t CpoBlockSize(int64_t channels, int64_t groups) {
  const int64_t per_group = channels / std::max<int64_t>(1, groups);
  if (groups <= 1) return std::max<int64_t>(1, std::min(channels, kCpoMaxChannelBlock));
  for (int64_t b = std::min(per_group, kCpoMaxChannelBlock); b > 1; --b) {
    if (per_group % b == 0) return b;
  }
  return 1;
}

uint64_t CpoActivation::NonZeros() const {
  uint64_t total = 0;
  for (int64_t s = 0; s < n * h; ++s) {
    if (w > 0) total += ptr.data()[(s * w + w - 1) * (blocks + 1) + blocks];
  }
  return total;
}

uint64_t CpoActivation::FootprintBytes() const {
  const uint64_t pointers = static_cast<uint64_t>(n * h * w * (blocks + 1));
  return NonZeros() * (sizeof(float) + sizeof(uint16_t)) + pointers * sizeof(uint32_t);
}

uint64_t CpsActivation::NonZeros() const {
  uint64_t total = 0;
  for (int64_t s = 0; s < n * h; ++s) total += vptr.data()[s * (c + 1) + c];
  return total;
}

uint64_t CpsActivation::Runs() const {
  uint64_t total = 0;
  for (int64_t s = 0; s < n * h; ++s) total += ptr.data()[s * (c + 1) + c];
  return total;
}

uint64_t CpsActivation::FootprintBytes() const {
  const uint64_t pointers = static_cast<uint64_t>(n * h * (c + 1));
  return NonZeros() * sizeof(float) + Runs() * 2 * sizeof(uint16_t) +
         pointers * 2 * sizeof(uint32_t);
}

std::string BuildCpo(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t block,
                     Parallel& parallel, CpoActivation* out) {
  std::string err = CheckSparseShape(w, c);
  if (!err.empty()) return err;
  out->n = n, out->h = h, out->w = w, out->c = c;
  out->block = std::max<int64_t>(1, block);
  out->blocks = (c + out->block - 1) / out->block;
  const uint64_t slots = static_cast<uint64_t>(n * h);
  err = out->values.Allocate(CheckedBytes(slots, w * c), "the CPO values");
  if (err.empty()) err = out->chans.Allocate(CheckedBytes(slots, w * c), "the CPO channels");
  if (err.empty()) {
    err = out->ptr.Allocate(CheckedBytes(slots, w * (out->blocks + 1)), "the CPO pointers");
  }
  if (!err.empty()) return err;
  const int64_t blocks = out->blocks;
  const CpoRowBuilder build_row = ActiveSparseKernels().build_cpo_row;
  ForEachSlot(n * h, w * c, parallel, [&](int64_t s, int64_t) {
    const int64_t base = s * w * c;
    build_row(x + base, w, c, out->block, blocks, out->values.data() + base,
                 out->chans.data() + base, out->ptr.data() + s * w * (blocks + 1));
  });
  return {};
}

std::string BuildCps(const float* x, int64_t n, int64_t h, int64_t w, int64_t c,
                     Parallel& parallel, CpsActivation* out) {
  std::string err = CheckSparseShape(w, c);
  if (!err.empty()) return err;
  out->n = n, out->h = h, out->w = w, out->c = c;
  const uint64_t slots = static_cast<uint64_t>(n * h);
  const uint64_t capacity = CheckedBytes(slots, w * c);
  const uint64_t pointers = CheckedBytes(slots, c + 1);
  err = out->values.Allocate(capacity, "the CPS values");
  if (err.empty()) err = out->run_start.Allocate(capacity, "the CPS run starts");
  if (err.empty()) err = out->run_len.Allocate(capacity, "the CPS run lengths");
  if (err.empty()) err = out->ptr.Allocate(pointers, "the CPS run pointers");
  if (err.empty()) err = out->vptr.Allocate(pointers, "the CPS value pointers");
  Workspace<uint32_t> cursors;  // per worker: 2*c per-channel counters
  const int64_t workers = parallel.NumThreads();
  if (err.empty()) err = cursors.Allocate(CheckedBytes(workers, 2 * c), "the CPS counters");
  if (!err.empty()) return err;
  const CpsRowBuilder build_row = ActiveSparseKernels().build_cps_row;
  ForEachSlot(n * h, w * c, parallel, [&](int64_t s, int64_t worker) {
    const int64_t base = s * w * c;
    uint32_t* scratch = cursors.data() + worker * 2 * c;
    build_row(x + base, w, c, out->values.data() + base, out->run_start.data() + base,
              out->run_len.data() + base, out->ptr.data() + s * (c + 1),
              out->vptr.data() + s * (c + 1), scratch);
  });
  return {};
}

}  // namespace jaxcps
