// Builds the CPO/CPS compressed activation (see sparse_format.h): per row slot, one pass
// counts non-zeros (and run starts) per channel, a second pass, over the same row while it is
// still in cache, scatters them channel-major.
#include "sparse_format.h"

#include <algorithm>

namespace jaxcps {

namespace {

// Slots handled by one task: enough work per task to amortise scheduling.
int64_t SlotsPerTask(int64_t slots, int64_t slot_elems, int64_t threads) {
  const int64_t by_threads = std::max<int64_t>(1, slots / (8 * threads));
  const int64_t by_size = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, slot_elems));
  return std::min(by_threads, by_size);
}

void BuildCpoSlot(const float* row, int64_t w, int64_t c, float* values, uint16_t* cols,
                  uint32_t* ptr, uint32_t* cursor) {
  std::fill(cursor, cursor + c, 0u);
  for (int64_t q = 0; q < w; ++q) {
    const float* px = row + q * c;
    for (int64_t ch = 0; ch < c; ++ch) cursor[ch] += px[ch] != 0.0f;
  }
  uint32_t total = 0;
  for (int64_t ch = 0; ch < c; ++ch) {
    ptr[ch] = total;
    total += cursor[ch];
    cursor[ch] = ptr[ch];
  }
  ptr[c] = total;
  for (int64_t q = 0; q < w; ++q) {
    const float* px = row + q * c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float v = px[ch];
      if (v != 0.0f) {
        const uint32_t k = cursor[ch]++;
        values[k] = v;
        cols[k] = static_cast<uint16_t>(q);
      }
    }
  }
}

void BuildCpsSlot(const float* row, int64_t w, int64_t c, float* values, uint16_t* run_start,
                  uint16_t* run_len, uint32_t* ptr, uint32_t* vptr, uint32_t* vcursor,
                  uint32_t* rcursor) {
  std::fill(vcursor, vcursor + c, 0u);
  std::fill(rcursor, rcursor + c, 0u);
  for (int64_t q = 0; q < w; ++q) {
    const float* px = row + q * c;
    const float* prev = px - c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const bool nz = px[ch] != 0.0f;
      vcursor[ch] += nz;
      rcursor[ch] += nz && (q == 0 || prev[ch] == 0.0f);
    }
  }
  uint32_t vtotal = 0, rtotal = 0;
  for (int64_t ch = 0; ch < c; ++ch) {
    vptr[ch] = vtotal;
    ptr[ch] = rtotal;
    vtotal += vcursor[ch];
    rtotal += rcursor[ch];
    vcursor[ch] = vptr[ch];
    rcursor[ch] = ptr[ch];
  }
  vptr[c] = vtotal;
  ptr[c] = rtotal;
  for (int64_t q = 0; q < w; ++q) {
    const float* px = row + q * c;
    const float* prev = px - c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float v = px[ch];
      if (v == 0.0f) continue;
      if (q == 0 || prev[ch] == 0.0f) {
        const uint32_t j = rcursor[ch]++;
        run_start[j] = static_cast<uint16_t>(q);
        run_len[j] = 0;
      }
      ++run_len[rcursor[ch] - 1];
      values[vcursor[ch]++] = v;
    }
  }
}

}  // namespace

uint64_t SparseActivation::NonZeros() const {
  const uint32_t* counts = kind == SparseKind::kCpo ? ptr.data() : vptr.data();
  uint64_t total = 0;
  for (int64_t s = 0; s < n * h; ++s) total += counts[s * (c + 1) + c];
  return total;
}

uint64_t SparseActivation::Runs() const {
  if (kind == SparseKind::kCpo) return NonZeros();
  uint64_t total = 0;
  for (int64_t s = 0; s < n * h; ++s) total += ptr.data()[s * (c + 1) + c];
  return total;
}

uint64_t SparseActivation::FootprintBytes() const {
  const uint64_t pointers = static_cast<uint64_t>(n * h * (c + 1));
  if (kind == SparseKind::kCpo) {
    return NonZeros() * (sizeof(float) + sizeof(uint16_t)) + pointers * sizeof(uint32_t);
  }
  return NonZeros() * sizeof(float) + Runs() * 2 * sizeof(uint16_t) +
         pointers * 2 * sizeof(uint32_t);
}

std::string BuildSparseActivation(SparseKind kind, const float* x, int64_t n, int64_t h,
                                  int64_t w, int64_t c, Parallel& parallel,
                                  SparseActivation* out) {
  if (w > kMaxSparseWidth) {
    return "input width " + std::to_string(w) + " exceeds " + std::to_string(kMaxSparseWidth) +
           ", the largest that CPO/CPS column indices address";
  }
  if (w * c >= (int64_t{1} << 32)) {
    return "input width x channels = " + std::to_string(w * c) +
           " does not fit the 32-bit offsets of a CPO/CPS row";
  }
  out->kind = kind;
  out->n = n;
  out->h = h;
  out->w = w;
  out->c = c;
  const uint64_t slots = static_cast<uint64_t>(n * h);
  const uint64_t capacity = CheckedBytes(slots, static_cast<uint64_t>(w * c));
  const uint64_t pointers = CheckedBytes(slots, static_cast<uint64_t>(c + 1));
  std::string err = out->values.Allocate(capacity, "the compressed values");
  if (err.empty()) err = out->ptr.Allocate(pointers, "the compressed pointers");
  if (err.empty() && kind == SparseKind::kCpo) {
    err = out->cols.Allocate(capacity, "the compressed column indices");
  }
  if (err.empty() && kind == SparseKind::kCps) {
    err = out->vptr.Allocate(pointers, "the compressed value pointers");
    if (err.empty()) err = out->run_start.Allocate(capacity, "the run starts");
    if (err.empty()) err = out->run_len.Allocate(capacity, "the run lengths");
  }
  if (!err.empty()) return err;
  if (slots == 0) return {};

  const int64_t per_task = SlotsPerTask(n * h, w * c, parallel.NumThreads());
  const int64_t tasks = (n * h + per_task - 1) / per_task;
  Workspace<uint32_t> cursors;  // per task: 2*c per-channel counters
  err = cursors.Allocate(CheckedBytes(static_cast<uint64_t>(tasks), 2 * static_cast<uint64_t>(c)),
                         "the build counters");
  if (!err.empty()) return err;
  parallel.For(tasks, [&](int64_t t) {
    uint32_t* scratch = cursors.data() + t * 2 * c;
    const int64_t end = std::min(n * h, (t + 1) * per_task);
    for (int64_t s = t * per_task; s < end; ++s) {
      const int64_t base = s * w * c;
      uint32_t* ptr = out->ptr.data() + s * (c + 1);
      if (kind == SparseKind::kCpo) {
        BuildCpoSlot(x + base, w, c, out->values.data() + base, out->cols.data() + base, ptr,
                     scratch);
      } else {
        BuildCpsSlot(x + base, w, c, out->values.data() + base, out->run_start.data() + base,
                     out->run_len.data() + base, ptr, out->vptr.data() + s * (c + 1),
                     scratch, scratch + c);
      }
    }
  });
  return {};
}

}  // namespace jaxcps
