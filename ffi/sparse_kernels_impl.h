// CPO and CPS tile kernels. Included once per instruction set by sparse_kernels_<isa>.cc,
// inside namespace jaxcps::<isa>, and compiled with that file's ISA flags: the inner loops
// run along output channels with compile-time length kTileO, which the compiler vectorizes
// (AVX-512: four 16-float FMAs per weight row). Everything here is static so that no
// ISA-specific copy can leak to another file through the linker.

namespace {

// acc[0:kTileO] += v * w[0:kTileO]
inline void AxpyFull(float* __restrict acc, float v, const float* __restrict w) {
  for (int64_t i = 0; i < kTileO; ++i) acc[i] += v * w[i];
}

inline void AxpyPartial(float* __restrict acc, float v, const float* __restrict w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += v * w[i];
}

// One weight row against `count` values spaced `vstride` apart, into consecutive accumulator
// pixels: the weight row stays in registers across the run (the point of CPS).
inline void AxpyRunFull(float* __restrict acc, const float* __restrict vals, int64_t count,
                        int64_t vstride, const float* __restrict w) {
  float wr[kTileO];
  for (int64_t i = 0; i < kTileO; ++i) wr[i] = w[i];
  for (int64_t j = 0; j < count; ++j) {
    const float v = vals[j * vstride];
    float* __restrict a = acc + j * kTileO;
    for (int64_t i = 0; i < kTileO; ++i) a[i] += v * wr[i];
  }
}

inline void AxpyRunPartial(float* __restrict acc, const float* __restrict vals, int64_t count,
                           int64_t vstride, const float* __restrict w, int64_t n) {
  for (int64_t j = 0; j < count; ++j) AxpyPartial(acc + j * kTileO, vals[j * vstride], w, n);
}

// First index in cols[lo, hi) whose column is >= q.
inline uint32_t LowerBound(const uint16_t* cols, uint32_t lo, uint32_t hi, int64_t q) {
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (cols[mid] < q) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

void CpoTile(const TileJob& job) {
  const bool full = job.o_len == kTileO;
  for (int64_t c = job.c_begin; c < job.c_end; ++c) {
    const float* wc = job.weights + (c - job.c_begin) * job.o_stride;
    for (int64_t r = job.r_begin; r < job.r_end; ++r) {
      const int64_t ri = r - job.r_begin;
      const int32_t row_taps = job.row_taps[ri];
      if (row_taps == 0) continue;
      const int64_t slot = job.first_slot + r;
      const uint32_t* p = job.ptr + slot * (job.c_total + 1);
      const uint32_t end = p[c + 1];
      if (p[c] == end) continue;  // this channel is all zero in this row
      const int64_t base = slot * job.slot_capacity;
      const uint16_t* cols = job.cols + base;
      const float* vals = job.values + base;
      const int32_t* kh_list = job.row_kh + ri * job.kh_count;
      const int32_t* oh_list = job.row_oh + ri * job.kh_count;
      for (uint32_t k = LowerBound(cols, p[c], end, job.q_begin); k < end; ++k) {
        const int64_t q = cols[k];
        if (q >= job.q_end) break;
        const float v = vals[k];
        const int64_t qi = q - job.q_begin;
        const int32_t col_taps = job.col_taps[qi];
        const int32_t* kw_list = job.col_kw + qi * job.kw_count;
        const int32_t* ow_list = job.col_ow + qi * job.kw_count;
        for (int32_t t = 0; t < col_taps; ++t) {
          for (int32_t u = 0; u < row_taps; ++u) {
            const float* wr = wc + (kh_list[u] * job.kw_count + kw_list[t]) * job.tap_stride;
            float* a = job.acc + (oh_list[u] * job.tile_w + ow_list[t]) * kTileO;
            if (full) {
              AxpyFull(a, v, wr);
            } else {
              AxpyPartial(a, v, wr, job.o_len);
            }
          }
        }
      }
    }
  }
}

void CpsTile(const TileJob& job) {
  const bool full = job.o_len == kTileO;
  const int64_t sw = job.sw;
  for (int64_t c = job.c_begin; c < job.c_end; ++c) {
    const float* wc = job.weights + (c - job.c_begin) * job.o_stride;
    for (int64_t r = job.r_begin; r < job.r_end; ++r) {
      const int64_t ri = r - job.r_begin;
      const int32_t row_taps = job.row_taps[ri];
      if (row_taps == 0) continue;
      const int64_t slot = job.first_slot + r;
      const uint32_t* p = job.ptr + slot * (job.c_total + 1);
      const uint32_t run_end = p[c + 1];
      if (p[c] == run_end) continue;
      const int64_t base = slot * job.slot_capacity;
      const uint16_t* starts = job.run_start + base;
      const uint16_t* lens = job.run_len + base;
      const float* vals = job.values + base + job.vptr[slot * (job.c_total + 1) + c];
      const int32_t* kh_list = job.row_kh + ri * job.kh_count;
      const int32_t* oh_list = job.row_oh + ri * job.kh_count;
      for (uint32_t k = p[c]; k < run_end; vals += lens[k], ++k) {
        const int64_t q0 = starts[k];
        const int64_t len = lens[k];
        if (q0 + len <= job.q_begin) continue;
        if (q0 >= job.q_end) break;
        for (int64_t kw = 0; kw < job.kw_count; ++kw) {
          // Element i of the run reaches output column (t0 + i) / sw through tap kw.
          const int64_t t0 = q0 + job.pad_left - kw * job.dw;
          int64_t first = job.ow_begin * sw - t0;
          if (first < 0) first = 0;
          int64_t last = (job.ow_end - 1) * sw - t0;
          if (last > len - 1) last = len - 1;
          if (first > last) continue;
          const int64_t rem = (t0 + first) % sw;
          if (rem != 0) first += sw - rem;
          if (first > last) continue;
          const int64_t count = (last - first) / sw + 1;
          const int64_t ow = (t0 + first) / sw - job.ow_begin;
          for (int32_t u = 0; u < row_taps; ++u) {
            const float* wr = wc + (kh_list[u] * job.kw_count + kw) * job.tap_stride;
            float* a = job.acc + (oh_list[u] * job.tile_w + ow) * kTileO;
            if (full) {
              AxpyRunFull(a, vals + first, count, sw, wr);
            } else {
              AxpyRunPartial(a, vals + first, count, sw, wr, job.o_len);
            }
          }
        }
      }
    }
  }
}

}  // namespace

extern const SparseKernelSet kKernels = {JAXCPS_ISA_NAME, CpoTile, CpsTile};
