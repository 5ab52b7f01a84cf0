// Builders of the CPO and CPS compressed activations and the sparse-direct masks (format.h).
#include "sparse/format.h"

#include <algorithm>
#include <cmath>

#include "runtime/cache.h"
#include "runtime/isa.h"

namespace jaxcps {

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
  const int64_t by_size =
      std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, slot_elems));
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

// Words that each worker ORs what it builds into, so workers never write the same word, then
// ORed together.
class WorkerUnion {
 public:
  // Room for `words` words per worker, zeroed.
  std::string Allocate(int64_t workers, int64_t words) {
    workers_ = workers, words_ = words;
    std::string err = partial_.Allocate(CheckedBytes(workers, words), "the live channels");
    if (err.empty()) std::fill_n(partial_.data(), workers * words, uint64_t{0});
    return err;
  }
  uint64_t* For(int64_t worker) { return partial_.data() + worker * words_; }
  // out[i] = the OR of every worker's word i.
  void Reduce(uint64_t* out) const {
    std::fill_n(out, words_, uint64_t{0});
    for (int64_t worker = 0; worker < workers_; ++worker) {
      for (int64_t i = 0; i < words_; ++i) out[i] |= partial_.data()[worker * words_ + i];
    }
  }

 private:
  Workspace<uint64_t> partial_;
  int64_t workers_ = 0, words_ = 0;
};

}  // namespace

namespace {
// Non-zeros per pixel that a CPO channel block holds at least (fewer make the per-pixel cost
// dominate), and at most where a larger block would still keep a kernel row's weights in L1.
// Measured on Zen 2 with the kernel-row order (docs/design.md section 3.1): at 50% zeros
// blocks of 32-40 channels beat 12 by 11-15%, at 70% 40-48 beat 20-24 by 5-12%, at 90% 60
// beat 32-48.
constexpr double kCpoMinNonZeros = 6.0;
constexpr double kCpoMaxNonZeros = 16.0;
// Bytes of a packed weight row that the L1 bound assumes: 64 output channels, AVX2's block
// (AVX-512's is twice as wide; it keeps this bound, so the form is the same on every ISA).
constexpr int64_t kCpoNominalRowBytes = 64 * sizeof(float);
// EstimateDensity reads kDensityRuns runs of kDensityRun floats spread evenly over x: many
// places, so clustered zeros average out, but few floats (reading 64K whole rows was 10% of
// the build at 90% zeros).
constexpr int64_t kDensityRuns = 512;
constexpr int64_t kDensityRun = 32;
}  // namespace

int64_t CpoBlockSize(double density, int64_t channels_per_group, int64_t width,
                     int64_t kernel_cols) {
  const double d = std::max(density, 1e-3);
  // A kernel row's weights are kernel_cols * (block | 1) rows.
  const double l1_rows =
      static_cast<double>(L1DataCacheBytes()) /
          static_cast<double>(std::max<int64_t>(1, kernel_cols) * kCpoNominalRowBytes) -
      1.0;
  const double wanted = std::max(kCpoMinNonZeros / d, std::min(kCpoMaxNonZeros / d, l1_rows));
  int64_t block = std::clamp<int64_t>(static_cast<int64_t>(std::lround(wanted / 4.0)) * 4,
                                      kCpoMinChannelBlock, kCpoMaxChannelBlock);
  // A last block of less than half the others costs a pass over every pixel for few
  // non-zeros: spread it over the others where that grows them by at most a quarter (e.g. 128
  // channels at 90% zeros: 2 blocks of 64, not 2 of 60 and one of 8).
  const int64_t rest = channels_per_group % block;
  if (rest != 0 && rest < block / 2 && channels_per_group > block) {
    const int64_t blocks = channels_per_group / block;
    const int64_t spread = (channels_per_group + 4 * blocks - 1) / (4 * blocks) * 4;
    if (4 * spread <= 5 * block) block = std::min(spread, kCpoMaxChannelBlock);
  }
  // The tap rows (block_size | 1, see BuildCpo) times the width must fit 16 bits.
  const int64_t index_limit = (int64_t{1} << 16) / std::max<int64_t>(1, width);
  block = std::min({block, channels_per_group, index_limit - 1});
  return std::max<int64_t>(1, block);
}

double EstimateDensity(const float* x, int64_t n, int64_t h, int64_t w, int64_t c) {
  const int64_t total = n * h * w * c;
  if (total == 0) return 1.0;
  const int64_t run = std::min(total, kDensityRun);
  const int64_t runs = std::min(kDensityRuns, total / run);
  const int64_t step = total / runs;
  int64_t nonzero = 0;
  for (int64_t r = 0; r < runs; ++r) {
    const float* p = x + r * step + (step - run) / 2;
    for (int64_t i = 0; i < run; ++i) nonzero += p[i] != 0.0f;
  }
  return static_cast<double>(nonzero) / static_cast<double>(runs * run);
}

uint64_t CpoActivation::NonZeros() const {
  uint64_t total = 0;
  for (int64_t block = 0; block < n * h * Blocks(); ++block) {
    const uint32_t* p = ptr.data() + block * (w + 1);
    total += p[w] - p[0];
  }
  return total;
}

uint64_t CpoActivation::FootprintBytes() const {
  const uint64_t pointers = static_cast<uint64_t>(n * h * Blocks() * (w + 1));
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

std::string BuildCpo(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t groups,
                     int64_t block_size, bool live_channels, Parallel& parallel,
                     CpoActivation* out) {
  std::string err = CheckSparseShape(w, c);
  if (!err.empty()) return err;
  groups = std::max<int64_t>(1, groups);
  out->n = n, out->h = h, out->w = w, out->c = c, out->groups = groups;
  // At most 64 channels, so a block's live channels are one word.
  out->block_size = std::clamp<int64_t>(block_size, 1, kCpoMaxChannelBlock);
  out->blocks_per_group = (c / groups + out->block_size - 1) / out->block_size;
  // A block's packed weights hold tap_rows rows per tap. An odd count puts the rows of one
  // channel under consecutive taps an odd multiple of a row apart, so a 3x3 kernel's nine
  // rows do not all fall in the same L1 sets, as they would at a block size that is a
  // multiple of 16 (10% slower on AVX2, docs/design.md).
  out->tap_rows = out->block_size | 1;
  const int64_t blocks = out->Blocks();
  const uint64_t slots = static_cast<uint64_t>(n * h);
  WorkerUnion partial;  // per worker: the live channels of the rows it built
  err = out->values.Allocate(CheckedBytes(slots, w * c), "the CPO values");
  if (err.empty()) err = out->index.Allocate(CheckedBytes(slots, w * c), "the CPO indices");
  if (err.empty()) {
    err = out->ptr.Allocate(CheckedBytes(slots, blocks * (w + 1)), "the CPO pointers");
  }
  if (err.empty()) err = out->live.Allocate(blocks, "the CPO live channels");
  if (err.empty() && live_channels) err = partial.Allocate(parallel.NumThreads(), blocks);
  if (!err.empty()) return err;
  const CpoRowBuilder build_row = ActiveSparseKernels().build_cpo_row;
  ForEachSlot(n * h, w * c, parallel, [&](int64_t s, int64_t worker) {
    const int64_t base = s * w * c;
    build_row(x + base, w, c, c / groups, out->block_size, out->tap_rows, out->blocks_per_group,
              groups, out->values.data() + base, out->index.data() + base,
              out->ptr.data() + s * blocks * (w + 1),
              live_channels ? partial.For(worker) : nullptr);
  });
  uint64_t* live = out->live.data();
  if (live_channels) {
    partial.Reduce(live);
    return {};
  }
  // A block with a non-zero in some slot: all its channels count as live.
  std::fill_n(live, blocks, uint64_t{0});
  const int64_t channels_per_group = c / groups;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = (b % out->blocks_per_group) * out->block_size;
    const int64_t count = std::min(out->block_size, channels_per_group - first);
    const uint64_t all = count >= 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1;
    for (int64_t s = 0; s < n * h && live[b] == 0; ++s) {
      const uint32_t* p = out->ptr.data() + (s * blocks + b) * (w + 1);
      if (p[w] != p[0]) live[b] = all;
    }
  }
  return {};
}

std::string BuildMasks(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t groups,
                       Parallel& parallel, ChannelMasks* out) {
  groups = std::max<int64_t>(1, groups);
  out->groups = groups;
  out->blocks_per_group = (c / groups + kMaskChannels - 1) / kMaskChannels;
  const int64_t stride = out->PixelStride(), per_row = w * stride;
  WorkerUnion partial;  // per worker: the union of the rows it built
  std::string err =
      out->masks.Allocate(CheckedBytes(static_cast<uint64_t>(n * h), per_row), "the channel masks");
  if (err.empty()) err = out->live.Allocate(stride, "the live channels");
  if (err.empty()) err = partial.Allocate(parallel.NumThreads(), stride);
  if (!err.empty()) return err;
  const MaskRowBuilder build_row = ActiveSparseKernels().build_mask_row;
  ForEachSlot(n * h, w * c, parallel, [&](int64_t s, int64_t worker) {
    uint64_t* row = out->masks.data() + s * per_row;
    build_row(x + s * w * c, w, c, c / groups, out->blocks_per_group, groups, row);
    uint64_t* live = partial.For(worker);
    for (int64_t q = 0; q < w; ++q) {
      for (int64_t b = 0; b < stride; ++b) live[b] |= row[q * stride + b];
    }
  });
  partial.Reduce(out->live.data());
  return {};
}

std::string BuildCps(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, Parallel& parallel,
                     CpsActivation* out) {
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
