// CPO, CPS and sparse-direct inner kernels. Included once per instruction set by
// tile_kernels_<isa>.cc, inside namespace jaxcps::<isa>, and compiled with that file's ISA
// flags; that file names the set (JAXCPS_TILE_ISA), its register width (JAXCPS_VEC_BYTES) and
// its register blocking, and this one defines the set's kKernels. Arithmetic runs on GCC vector
// types of one register of the ISA. Everything here but the set itself (kKernels) has internal
// linkage, so no ISA-specific copy can leak to another file through the linker.

// The AVX-512 paths of the builders: compiled into the avx512 variant (and, in a -march=native
// build on such a CPU, into every x86 variant, which therefore includes <immintrin.h>).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define JAXCPS_TILE_AVX512 1
#else
#define JAXCPS_TILE_AVX512 0
#endif
// The AVX2 paths of the builders: compiled into the avx2 variant (and as above).
#if defined(__AVX2__) && !JAXCPS_TILE_AVX512
#define JAXCPS_TILE_AVX2 1
#else
#define JAXCPS_TILE_AVX2 0
#endif

#if !defined(JAXCPS_TILE_ISA) || !defined(JAXCPS_VEC_BYTES) || !defined(JAXCPS_DIRECT_ROWS) || \
    !defined(JAXCPS_DIRECT_COLS) || !defined(JAXCPS_DIRECT_MAX_O_VECS) ||                      \
    !defined(JAXCPS_DIRECT_BLOCK_VECS) || !defined(JAXCPS_CPO_MAX_O_VECS)
#error "tile_kernels_<isa>.cc defines the set's name, register width and blocking before this"
#endif

namespace {

// One register of the ISA: GCC lowers a wider vector type through the stack (docs/design.md,
// section 2), so the kernels compute on registers and count the layouts' vectors apart.
typedef float Vec __attribute__((vector_size(JAXCPS_VEC_BYTES)));
typedef float VecUnaligned __attribute__((vector_size(JAXCPS_VEC_BYTES), aligned(4), may_alias));
constexpr int kLanes = JAXCPS_VEC_BYTES / static_cast<int>(sizeof(float));  // floats per register
// Registers per vector of the layouts (kVectorLanes floats: tile widths, packed weight rows).
constexpr int kRegsPerVector = static_cast<int>(kVectorLanes) / kLanes;
static_assert(kRegsPerVector * kLanes == kVectorLanes, "a layout vector is whole registers");

inline Vec LoadVec(const float* p) { return *reinterpret_cast<const VecUnaligned*>(p); }
inline void StoreVec(float* p, Vec v) { *reinterpret_cast<VecUnaligned*>(p) = v; }

// Calls f(std::integral_constant<int, vecs>()) if 1 <= vecs <= Max and returns true; false
// otherwise. The kernels are templates on their accumulator vectors, so they stay in registers.
template <int Max, int N = 1, typename F>
bool WithVecs(int64_t vecs, F&& f) {
  if constexpr (N > Max) {
    return false;
  } else {
    if (vecs == N) {
      f(std::integral_constant<int, N>());
      return true;
    }
    return WithVecs<Max, N + 1>(vecs, f);
  }
}

// ---------------------------------------------------------------------------------------------
// CPO: gather per output pixel (see CpoJob). NV vectors of output channels stay in registers.
//
// Two vertically adjacent output pixels share most input rows (for a 3x3 kernel at stride 1,
// two of the four rows they read), through different kernel rows. Where the registers hold
// both pixels' accumulators (kPairVecs), the band runs two output rows at a time and walks
// each shared row's non-zeros once for both pixels: fewer loops (whose exits the branch
// predictor misses) and fewer index and value loads per multiply-add. Elsewhere an output row
// runs one kernel row at a time (GatherRowByKernelRows).

#ifndef JAXCPS_CPO_PAIR_MAX_O_VECS
#define JAXCPS_CPO_PAIR_MAX_O_VECS 0
#endif
constexpr int kPairVecs = JAXCPS_CPO_PAIR_MAX_O_VECS;

// Where set, GatherRange with at least this many accumulator registers takes two non-zeros per
// step and adds the sum of their products to each accumulator: one dependent add per two
// non-zeros instead of two dependent multiply-adds (docs/design.md, section 3.2).
#ifndef JAXCPS_CPO_SUM_TWO_MIN_REGS
#define JAXCPS_CPO_SUM_TWO_MIN_REGS 0
#endif
constexpr int kSumTwoMinRegs = JAXCPS_CPO_SUM_TWO_MIN_REGS;

// Adds the non-zeros [begin, end) of a compressed row to acc (V registers): entry e's weight
// row is w + (index[e] - shift) * V * kLanes.
template <int V>
inline void GatherRange(Vec (&acc)[V], const float* values, const uint16_t* index, uint32_t begin,
                        uint32_t end, const float* w, int64_t shift) {
  uint32_t e = begin;
  if constexpr (kSumTwoMinRegs > 0 && V >= kSumTwoMinRegs) {
    for (; e + 2 <= end; e += 2) {
      const float v0 = values[e], v1 = values[e + 1];
      const float* row0 = w + (static_cast<int64_t>(index[e]) - shift) * (V * kLanes);
      const float* row1 = w + (static_cast<int64_t>(index[e + 1]) - shift) * (V * kLanes);
#pragma GCC unroll 16
      for (int i = 0; i < V; ++i) {
        acc[i] += v0 * LoadVec(row0 + i * kLanes) + v1 * LoadVec(row1 + i * kLanes);
      }
    }
  }
  for (; e < end; ++e) {
    const float v = values[e];
    const float* row = w + (static_cast<int64_t>(index[e]) - shift) * (V * kLanes);
#pragma GCC unroll 16
    for (int i = 0; i < V; ++i) acc[i] += v * LoadVec(row + i * kLanes);
  }
}

// GatherRange for two pixels at once, with the weights of their own kernel rows.
template <int V>
inline void GatherRange2(Vec (&acc_a)[V], Vec (&acc_b)[V], const float* values,
                         const uint16_t* index, uint32_t begin, uint32_t end, const float* w_a,
                         const float* w_b, int64_t shift) {
  for (uint32_t e = begin; e < end; ++e) {
    const float v = values[e];
    const int64_t offset = (static_cast<int64_t>(index[e]) - shift) * (V * kLanes);
#pragma GCC unroll 16
    for (int i = 0; i < V; ++i) {
      acc_a[i] += v * LoadVec(w_a + offset + i * kLanes);
      acc_b[i] += v * LoadVec(w_b + offset + i * kLanes);
    }
  }
}

// An input row and the kernel rows through which output rows a and b read it (-1: not read).
struct RowTap {
  int64_t ih, kh_a, kh_b;
};

// The input rows that output rows oh (a) and oh + pair (b, if pair is 1) of one image read.
inline int64_t RowTaps(const CpoJob& job, int64_t oh, int pair, RowTap* taps) {
  int64_t count = 0;
  const int64_t top_a = oh * job.sh - job.pad_top, top_b = (oh + 1) * job.sh - job.pad_top;
  for (int64_t kh = 0; kh < job.kh_count; ++kh) {  // rows of a, with b's matching kernel row
    const int64_t ih = top_a + kh * job.dh;
    if (ih < 0 || ih >= job.h) continue;
    int64_t kh_b = -1;
    if (pair && (ih - top_b) >= 0 && (ih - top_b) % job.dh == 0 &&
        (ih - top_b) / job.dh < job.kh_count) {
      kh_b = (ih - top_b) / job.dh;
    }
    taps[count++] = {ih, kh, kh_b};
  }
  if (!pair) return count;
  for (int64_t kh = 0; kh < job.kh_count; ++kh) {  // rows of b that a does not read
    const int64_t ih = top_b + kh * job.dh;
    if (ih < 0 || ih >= job.h) continue;
    const bool read_by_a =
        (ih - top_a) >= 0 && (ih - top_a) % job.dh == 0 && (ih - top_a) / job.dh < job.kh_count;
    if (!read_by_a) taps[count++] = {ih, -1, kh};
  }
  return count;
}

// The entries of one compressed input row (slot) that output pixel ow gathers through one
// kernel row's weights w: when DW = 1 the kernel's columns are one range of the row.
template <int V>
inline void GatherTapRow(Vec (&acc)[V], const CpoJob& job, const uint32_t* p, const float* values,
                         const uint16_t* index, const float* w, int64_t ow) {
  // Entries of column q have index q*tap_rows + c, and tap kw's weight rows start at
  // kw*tap_rows: entries of column q through tap kw shift by (q - kw) columns.
  const int64_t q0 = ow * job.sw - job.pad_left;  // input column under kernel column 0
  if (job.dw == 1) {
    const int64_t lo = q0 < 0 ? 0 : q0;
    const int64_t hi = q0 + job.kw_count < job.w ? q0 + job.kw_count : job.w;
    if (lo < hi) GatherRange<V>(acc, values, index, p[lo], p[hi], w, q0 * job.tap_rows);
    return;
  }
  for (int64_t kw = 0; kw < job.kw_count; ++kw) {
    const int64_t iw = q0 + kw * job.dw;
    if (iw >= 0 && iw < job.w) {
      GatherRange<V>(acc, values, index, p[iw], p[iw + 1], w, (iw - kw) * job.tap_rows);
    }
  }
}

// Output row oh of image n (out: its first pixel), one kernel row at a time: a pass over the
// whole output row per input row it reads, so a pass touches one kernel row's weights (a third
// of a 3x3 block's), and consecutive pixels find them in L1. The accumulators are loaded and
// stored per pass; still 5-12% faster than all of a pixel's taps at once (docs/design.md).
// The last pass stores to final (if not null, the row's first pixel there) instead of out.
// taps has room for kh_count entries.
template <int NV>
void GatherRowByKernelRows(const CpoJob& job, int64_t n, int64_t oh, float* out, float* final,
                           RowTap* taps) {
  constexpr int V = NV * kRegsPerVector;
  constexpr int64_t kO = V * kLanes;
  const int64_t ptr_row = job.blocks * (job.w + 1);
  const int64_t kh_floats = job.kw_count * job.tap_rows * kO;
  const int64_t tap_count = RowTaps(job, oh, 0, taps);
  if (tap_count == 0 && (!job.accumulate || final != nullptr)) {
    // Every input row it would read is padding: the sums are zero, or what out holds.
    float* dst = final != nullptr ? final : out;
    const int64_t dst_stride = final != nullptr ? job.final_stride : job.out_stride;
    for (int64_t ow = 0; ow < job.ow; ++ow) {
#pragma GCC unroll 16
      for (int i = 0; i < V; ++i) {
        StoreVec(dst + ow * dst_stride + i * kLanes,
                 job.accumulate ? LoadVec(out + ow * job.out_stride + i * kLanes) : Vec{});
      }
    }
  }
  for (int64_t t = 0; t < tap_count; ++t) {
    const int64_t slot = n * job.h + taps[t].ih;
    const uint32_t* p = job.ptr + slot * ptr_row + job.block * (job.w + 1);
    const float* values = job.values + slot * job.slot_capacity;
    const uint16_t* index = job.index + slot * job.slot_capacity;
    const float* w = job.weights + taps[t].kh_a * kh_floats;
    const bool first = t == 0 && !job.accumulate;
    const bool last = t + 1 == tap_count && final != nullptr;
    float* dst = last ? final : out;
    const int64_t dst_stride = last ? job.final_stride : job.out_stride;
    for (int64_t ow = 0; ow < job.ow; ++ow) {
      Vec acc[V];
#pragma GCC unroll 16
      for (int i = 0; i < V; ++i) {
        acc[i] = first ? Vec{} : LoadVec(out + ow * job.out_stride + i * kLanes);
      }
      GatherTapRow<V>(acc, job, p, values, index, w, ow);
#pragma GCC unroll 16
      for (int i = 0; i < V; ++i) StoreVec(dst + ow * dst_stride + i * kLanes, acc[i]);
    }
  }
}

// Output pixels (oh, ow) and (oh + 1, ow) of image n for every ow, all their taps at once;
// out_a/out_b point to the first pixel of each output row, their sums stored to final_a/final_b
// (the same rows in job.final_out) where that is not null; taps has room for 2 * kh_count
// entries.
template <int NV>
void GatherRowPair(const CpoJob& job, int64_t n, int64_t oh, float* out_a, float* out_b,
                   float* final_a, float* final_b, RowTap* taps) {
  constexpr int V = NV * kRegsPerVector;
  constexpr int64_t kO = V * kLanes;
  const int64_t ptr_row = job.blocks * (job.w + 1);
  const int64_t kh_floats = job.kw_count * job.tap_rows * kO;
  const int64_t tap_count = RowTaps(job, oh, 1, taps);
  for (int64_t ow = 0; ow < job.ow; ++ow) {
    Vec acc_a[V], acc_b[V];
    float* pixel_a = out_a + ow * job.out_stride;
    float* pixel_b = out_b + ow * job.out_stride;
#pragma GCC unroll 16
    for (int i = 0; i < V; ++i) {
      acc_a[i] = job.accumulate ? LoadVec(pixel_a + i * kLanes) : Vec{};
      acc_b[i] = job.accumulate ? LoadVec(pixel_b + i * kLanes) : Vec{};
    }
    const int64_t q0 = ow * job.sw - job.pad_left;  // input column under kernel column 0
    for (int64_t t = 0; t < tap_count; ++t) {
      const RowTap& tap = taps[t];
      const int64_t slot = n * job.h + tap.ih;
      const uint32_t* p = job.ptr + slot * ptr_row + job.block * (job.w + 1);
      const float* values = job.values + slot * job.slot_capacity;
      const uint16_t* index = job.index + slot * job.slot_capacity;
      // A kernel row of -1: the row is not read through that side (no pointer before weights).
      const float* w_a = tap.kh_a < 0 ? nullptr : job.weights + tap.kh_a * kh_floats;
      const float* w_b = tap.kh_b < 0 ? nullptr : job.weights + tap.kh_b * kh_floats;
      if (tap.kh_a < 0) {
        GatherTapRow<V>(acc_b, job, p, values, index, w_b, ow);
      } else if (tap.kh_b < 0) {
        GatherTapRow<V>(acc_a, job, p, values, index, w_a, ow);
      } else if (job.dw == 1) {  // a row both read: walked once for both
        const int64_t lo = q0 < 0 ? 0 : q0;
        const int64_t hi = q0 + job.kw_count < job.w ? q0 + job.kw_count : job.w;
        if (lo < hi) {
          GatherRange2<V>(acc_a, acc_b, values, index, p[lo], p[hi], w_a, w_b, q0 * job.tap_rows);
        }
      } else {
        for (int64_t kw = 0; kw < job.kw_count; ++kw) {
          const int64_t iw = q0 + kw * job.dw;
          if (iw >= 0 && iw < job.w) {
            GatherRange2<V>(acc_a, acc_b, values, index, p[iw], p[iw + 1], w_a, w_b,
                            (iw - kw) * job.tap_rows);
          }
        }
      }
    }
    if (final_a != nullptr) {
      pixel_a = final_a + ow * job.final_stride;
      pixel_b = final_b + ow * job.final_stride;
    }
#pragma GCC unroll 16
    for (int i = 0; i < V; ++i) {
      StoreVec(pixel_a + i * kLanes, acc_a[i]);
      StoreVec(pixel_b + i * kLanes, acc_b[i]);
    }
  }
}

template <int NV>
void CpoBandWith(const CpoJob& job_ref) {
  const CpoJob job = job_ref;  // a local copy: the vector stores may alias the caller's job
  const std::unique_ptr<RowTap[]> taps(new RowTap[2 * job.kh_count]);
  for (int64_t row = job.row_begin; row < job.row_end;) {
    const int64_t n = row / job.oh, oh = row % job.oh;
    float* out = job.out + (row - job.row_begin) * job.ow * job.out_stride;
    float* final = job.final_out == nullptr
                       ? nullptr
                       : job.final_out + (row - job.row_begin) * job.ow * job.final_stride;
    if (NV <= kPairVecs && row + 1 < job.row_end && oh + 1 < job.oh) {
      GatherRowPair<NV>(job, n, oh, out, out + job.ow * job.out_stride, final,
                        final == nullptr ? nullptr : final + job.ow * job.final_stride, taps.get());
      row += 2;
    } else {
      GatherRowByKernelRows<NV>(job, n, oh, out, final, taps.get());
      row += 1;
    }
  }
}

bool CpoBand(const CpoJob& job) {
  return WithVecs<JAXCPS_CPO_MAX_O_VECS>(job.o_vecs,
                                         [&](auto nv) { CpoBandWith<decltype(nv)::value>(job); });
}

// ---------------------------------------------------------------------------------------------
// CPS: scatter runs into an L1 output tile (see CpsJob). Along a run, the weight row of one tap
// stays in registers while consecutive output pixels are updated.

inline void AxpyRun(float* acc, const float* vals, int64_t count, int64_t vstride, const float* w) {
  constexpr int kNV = kTileO / kLanes;  // registers
  Vec wr[kNV];
#pragma GCC unroll 16
  for (int i = 0; i < kNV; ++i) wr[i] = LoadVec(w + i * kLanes);
  for (int64_t j = 0; j < count; ++j, acc += kTileO) {
    const float v = vals[j * vstride];
#pragma GCC unroll 16
    for (int i = 0; i < kNV; ++i) StoreVec(acc + i * kLanes, LoadVec(acc + i * kLanes) + v * wr[i]);
  }
}

inline void AxpyRunNarrow(float* acc, const float* vals, int64_t count, int64_t vstride,
                          const float* w, int64_t n) {
  for (int64_t j = 0; j < count; ++j, acc += kTileO) {
    const float v = vals[j * vstride];
    for (int64_t i = 0; i < n; ++i) acc[i] += v * w[i];
  }
}

// Stride 1, no dilation, kTileO channels: the patterns of a run's elements are unit shifts,
// so the run convolves with one kernel row as a 1-D convolution. Output column t (tile-local)
// receives vals[t - base + kw] * W[kw] for every tap kw that lands inside the run: its
// accumulators are loaded and stored once for all KW taps, whose weight rows stay in
// registers for the whole run.
template <int KW>
void RunRowShifted(float* acc_row, int64_t tile_w, const float* vals, int64_t len, int64_t base,
                   const float* w, int64_t tap_stride) {
  constexpr int kNV = kTileO / kLanes;  // registers
  Vec wr[KW][kNV];
#pragma GCC unroll 8
  for (int kw = 0; kw < KW; ++kw) {
#pragma GCC unroll 16
    for (int i = 0; i < kNV; ++i) wr[kw][i] = LoadVec(w + kw * tap_stride + i * kLanes);
  }
  int64_t t_begin = base - (KW - 1), t_end = base + len;
  if (t_begin < 0) t_begin = 0;
  if (t_end > tile_w) t_end = tile_w;
  for (int64_t t = t_begin; t < t_end; ++t) {
    float* a = acc_row + t * kTileO;
    Vec sum[kNV];
#pragma GCC unroll 16
    for (int i = 0; i < kNV; ++i) sum[i] = LoadVec(a + i * kLanes);
#pragma GCC unroll 8
    for (int kw = 0; kw < KW; ++kw) {
      const int64_t j = t - base + kw;
      if (j < 0 || j >= len) continue;
      const float v = vals[j];
#pragma GCC unroll 16
      for (int i = 0; i < kNV; ++i) sum[i] += v * wr[kw][i];
    }
#pragma GCC unroll 16
    for (int i = 0; i < kNV; ++i) StoreVec(a + i * kLanes, sum[i]);
  }
}

using RunRowFn = void (*)(float*, int64_t, const float*, int64_t, int64_t, const float*, int64_t);

// The 1-D run kernel for this job, or nullptr where it does not apply.
RunRowFn ShiftedRunKernel(const CpsJob& job) {
  if (job.o_len != kTileO || job.sw != 1 || job.dw != 1) return nullptr;
  switch (job.kw_count) {
    case 1:
      return RunRowShifted<1>;
    case 2:
      return RunRowShifted<2>;
    case 3:
      return RunRowShifted<3>;
    case 4:
      return RunRowShifted<4>;
    case 5:
      return RunRowShifted<5>;
    default:
      return nullptr;  // more weight rows than it is worth holding
  }
}

void CpsTile(const CpsJob& job) {
  const bool full = job.o_len == kTileO;
  const RunRowFn shifted = ShiftedRunKernel(job);
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
      if (p[c] == run_end) continue;  // channel c is all zero in this row
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
        if (shifted != nullptr) {
          const int64_t col = q0 + job.pad_left - job.ow_begin;  // tile column of tap 0
          for (int32_t u = 0; u < row_taps; ++u) {
            shifted(job.acc + oh_list[u] * job.tile_w * kTileO, job.tile_w, vals, len, col,
                    wc + kh_list[u] * job.kw_count * job.tap_stride, job.tap_stride);
          }
          continue;
        }
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
              AxpyRun(a, vals + first, count, sw, wr);
            } else {
              AxpyRunNarrow(a, vals + first, count, sw, wr, job.o_len);
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Sparse direct (see DirectJob): R x C output pixels x NV vectors of accumulators in registers.

// A block is kDirectRows output rows x kDirectCols output columns.
constexpr int kDirectRows = JAXCPS_DIRECT_ROWS;
constexpr int kDirectCols = JAXCPS_DIRECT_COLS;
// Vectors of output channels per register block (a tile of more runs as several).
constexpr int kDirectBlockVecs = JAXCPS_DIRECT_BLOCK_VECS;

// Loads (or stores) the first `len` of V registers' floats; the rest read as zero.
template <int V>
inline void LoadPartial(Vec (&acc)[V], const float* src, int64_t len) {
  float tmp[V * kLanes] = {};
  for (int64_t i = 0; i < len; ++i) tmp[i] = src[i];
#pragma GCC unroll 16
  for (int i = 0; i < V; ++i) acc[i] = LoadVec(tmp + i * kLanes);
}

template <int V>
inline void StorePartial(float* dst, const Vec (&acc)[V], int64_t len) {
  float tmp[V * kLanes];
#pragma GCC unroll 16
  for (int i = 0; i < V; ++i) StoreVec(tmp + i * kLanes, acc[i]);
  for (int64_t i = 0; i < len; ++i) dst[i] = tmp[i];
}

// For each 8-bit mask, the positions of its set bits in order, then zeros: the permutation
// that packs the selected lanes of 8 to the front.
struct LeftPack8 {
  uint8_t lanes[256][8];
  constexpr LeftPack8() : lanes() {
    for (int mask = 0; mask < 256; ++mask) {
      int k = 0;
      for (int lane = 0; lane < 8; ++lane) {
        if (mask & (1 << lane)) lanes[mask][k++] = static_cast<uint8_t>(lane);
      }
    }
  }
};
constexpr LeftPack8 kLeftPack8;

// A segment is the live channels of up to kListBlocks blocks of 64 under one tap, so its
// entries (relative to its first block) fit 16 bits.
constexpr int64_t kListBlocks = 8;
// Entries written past a list's end by AppendLive.
constexpr int64_t kListSlack = 8;
// The lists and segments that DirectBlock gathers before handing them to DirectSegments: enough
// that one call covers many taps of a layer with few channels (its fixed cost is the
// accumulators' load and store), little enough to stay in L1 beside the input.
constexpr int64_t kListCapacity = 2048;
constexpr int kMaxSegments = 16;
static_assert(kListCapacity >= kListBlocks * kMaskChannels, "a segment's list always fits");

// Appends first + i for each set bit i of live, in order, to list[count...]; returns the new
// count. Branch-free, 8 channels per step, and the steps independent (each finds its place
// by counting the bits below it): every step stores 8 entries, so up to kListSlack entries
// past the returned count are written.
inline int64_t AppendLive(uint16_t* list, int64_t count, uint64_t live, int64_t first) {
  typedef uint8_t Lanes8 __attribute__((vector_size(8), aligned(1)));
  typedef uint16_t Index8 __attribute__((vector_size(16)));
  typedef uint16_t Index8Unaligned __attribute__((vector_size(16), aligned(2), may_alias));
#pragma GCC unroll 8
  for (int byte = 0; byte < 8; ++byte) {
    const unsigned bits = static_cast<unsigned>(live >> (8 * byte)) & 0xFFu;
    const int64_t at = count + __builtin_popcountll(live & ((uint64_t{1} << (8 * byte)) - 1));
    const Lanes8 lanes = *reinterpret_cast<const Lanes8*>(kLeftPack8.lanes[bits]);
    *reinterpret_cast<Index8Unaligned*>(list + at) =
        __builtin_convertvector(lanes, Index8) + static_cast<uint16_t>(first + 8 * byte);
  }
  return count + __builtin_popcountll(live);
}

// Channels of a segment for a block of P pixels: under the segment's tap, pixel p reads
// xp[p][c] and every pixel the tap's packed weight row c at rows, for c in list[0, count), or
// for c in [0, count) where list is null (a full union).
template <int P>
struct DirectSegment {
  const float* xp[P];
  const float* rows;
  const uint16_t* list;
  int64_t count;
};

// The segments into the P pixels' accumulators of one sub-tile: V registers of output channels
// from offset within weight rows of kRowFloats. The loop per channel is counted, so its fixed
// work is one index load, not a mask walk; out of line, so the pointers get registers of their
// own. A full union runs a loop of its own without the index load (at 0% zeros 5-7% faster
// than reading a constant list). No prefetch: measured equal or faster without it.
template <int P, int V, int64_t kRowFloats>
__attribute__((noinline)) void DirectSegments(Vec (&acc_ref)[P][V],
                                              const DirectSegment<P>* segments, int count,
                                              int64_t offset) {
  Vec acc[P][V];
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 16
    for (int i = 0; i < V; ++i) acc[p][i] = acc_ref[p][i];
  }
  for (const DirectSegment<P>* s = segments; s != segments + count; ++s) {
    const float* xp[P];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) xp[p] = s->xp[p];
    const float* rows = s->rows + offset;
    // Channel c's weight row into every pixel's accumulators.
    const auto multiply = [&](int64_t c) __attribute__((always_inline)) {
      const float* wr = rows + c * kRowFloats;
      Vec wv[V];
#pragma GCC unroll 16
      for (int i = 0; i < V; ++i) wv[i] = LoadVec(wr + i * kLanes);
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) {
        const float v = xp[p][c];
#pragma GCC unroll 16
        for (int i = 0; i < V; ++i) acc[p][i] += v * wv[i];
      }
    };
    if (s->list == nullptr) {
      for (int64_t c = 0; c < s->count; ++c) multiply(c);
    } else {
      for (int64_t k = 0; k < s->count; ++k) multiply(s->list[k]);
    }
  }
#pragma GCC unroll 16
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 16
    for (int i = 0; i < V; ++i) acc_ref[p][i] = acc[p][i];
  }
}

// The R x C output pixels (oh + r, ow0 + c) of image n, all inside the output; out is pixel
// (oh, ow0).
template <int NV, int R, int C>
void DirectBlock(const DirectJob& job, int64_t n, int64_t oh, int64_t ow0, float* out) {
  constexpr int P = R * C;
  // The tile's NV vectors of output channels run as S sub-tiles of SV vectors, one after the
  // other over the same lists: a sub-tile's accumulators fill the registers.
  constexpr int SV = NV < kDirectBlockVecs ? NV : kDirectBlockVecs;
  static_assert(NV % SV == 0, "a tile is whole sub-tiles");
  constexpr int S = NV / SV;
  constexpr int V = SV * kRegsPerVector;
  constexpr int64_t kSub = SV * kVectorLanes;  // floats of a sub-tile
  constexpr int64_t kRow = NV * kVectorLanes;  // floats of a packed weight row
  const int64_t row_stride = job.ow * job.out_stride;
  Vec acc[S][P][V];
  uint16_t lists[kListCapacity + kListSlack];
  DirectSegment<P> segments[kMaxSegments];
  int segment_count = 0;
  int64_t listed = 0;  // entries of lists in use
  const auto run = [&] {
#pragma GCC unroll 4
    for (int t = 0; t < S; ++t) {
      DirectSegments<P, V, kRow>(acc[t], segments, segment_count, t * kSub);
    }
    segment_count = 0;
    listed = 0;
  };
#pragma GCC unroll 4
  for (int t = 0; t < S; ++t) {
    const int64_t len = job.o_len - t * kSub;  // channels of the sub-tile to write, if < kSub
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) {
      const float* pixel = out + (p / C) * row_stride + (p % C) * job.out_stride + t * kSub;
      if (!job.accumulate) {
#pragma GCC unroll 16
        for (int i = 0; i < V; ++i) acc[t][p][i] = Vec{};
      } else if (len >= kSub) {
#pragma GCC unroll 16
        for (int i = 0; i < V; ++i) acc[t][p][i] = LoadVec(pixel + i * kLanes);
      } else {
        LoadPartial<V>(acc[t][p], pixel, len);
      }
    }
  }
  for (int64_t kh = 0; kh < job.kh_count; ++kh) {
    int64_t ih[R];
    bool any_row = false;
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      ih[r] = (oh + r) * job.sh - job.pad_top + kh * job.dh;
      any_row |= ih[r] >= 0 && ih[r] < job.h;
    }
    if (!any_row) continue;
    for (int64_t kw = 0; kw < job.kw_count; ++kw) {
      // Each pixel's input pixel under this tap, or the zero pixel outside the input.
      const float* xp[P];
      const uint64_t* mp[P];
#pragma GCC unroll 16
      for (int p = 0; p < P; ++p) {
        const int64_t row = ih[p / C];
        const int64_t iw = (ow0 + p % C) * job.sw - job.pad_left + kw * job.dw;
        const bool inside = row >= 0 && row < job.h && iw >= 0 && iw < job.w;
        const int64_t pixel = (n * job.h + row) * job.w + iw;
        xp[p] = inside ? job.x + pixel * job.pixel_stride : job.zero_x;
        mp[p] = inside ? job.masks + pixel * job.mask_stride : job.zero_masks;
      }
      const float* tap = job.weights + (kh * job.kw_count + kw) * job.tap_stride;
      // Per segment, the union of the pixels' masks: every channel, or a list of them.
      for (int64_t b0 = job.block_begin; b0 < job.block_end; b0 += kListBlocks) {
        const int64_t blocks = job.block_end - b0 < kListBlocks ? job.block_end - b0 : kListBlocks;
        uint64_t live[kListBlocks];
        int64_t count = 0;
        for (int64_t b = 0; b < blocks; ++b) {
          live[b] = 0;
#pragma GCC unroll 16
          for (int p = 0; p < P; ++p) live[b] |= mp[p][b0 + b];
          count += __builtin_popcountll(live[b]);
        }
        if (count == 0) continue;
        DirectSegment<P> segment;
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) segment.xp[p] = xp[p] + b0 * kMaskChannels;
        segment.rows = tap + b0 * kMaskChannels * kRow;
        segment.count = count;
        if (count == blocks * kMaskChannels) {  // all live somewhere in the batch, so packed
          segment.list = nullptr;               // every channel
        } else {
          if (listed + count > kListCapacity) run();
          int64_t end = listed;
          for (int64_t b = 0; b < blocks; ++b) {
            end = AppendLive(lists, end, live[b], b * kMaskChannels);
          }
          segment.list = lists + listed;
          listed = end;
        }
        segments[segment_count++] = segment;
        if (segment_count == kMaxSegments) run();
      }
    }
  }
  if (segment_count != 0) run();
#pragma GCC unroll 4
  for (int t = 0; t < S; ++t) {
    const int64_t len = job.o_len - t * kSub;
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) {
      float* pixel = out + (p / C) * row_stride + (p % C) * job.out_stride + t * kSub;
      if (len >= kSub) {
#pragma GCC unroll 16
        for (int i = 0; i < V; ++i) StoreVec(pixel + i * kLanes, acc[t][p][i]);
      } else {
        StorePartial<V>(pixel, acc[t][p], len);
      }
    }
  }
}

// Output rows [oh, oh + R) of image n: blocks of R x C pixels, then R x 1 for the last
// columns, so no block computes pixels outside the output.
template <int NV, int R, int C>
void DirectRows(const DirectJob& job, int64_t n, int64_t oh, float* out) {
  int64_t ow0 = 0;
  for (; ow0 + C <= job.ow; ow0 += C) {
    DirectBlock<NV, R, C>(job, n, oh, ow0, out + ow0 * job.out_stride);
  }
  for (; ow0 < job.ow; ++ow0) DirectBlock<NV, R, 1>(job, n, oh, ow0, out + ow0 * job.out_stride);
}

template <int NV>
void DirectBandWith(const DirectJob& job_ref) {
  constexpr int R = kDirectRows, C = kDirectCols;
  const DirectJob job = job_ref;  // a local copy: the vector stores may alias the caller's job
  for (int64_t row = job.row_begin; row < job.row_end;) {
    const int64_t n = row / job.oh, oh = row % job.oh;
    const int64_t left = job.oh - oh < job.row_end - row ? job.oh - oh : job.row_end - row;
    float* out = job.out + (row - job.row_begin) * job.ow * job.out_stride;
    // The image's or band's last rows: blocks of as many pixels, as few rows high.
    if (left >= R) {
      DirectRows<NV, R, C>(job, n, oh, out);
      row += R;
    } else if (R > 2 && left == 2) {
      DirectRows<NV, 2, R * C / 2>(job, n, oh, out);
      row += 2;
    } else {
      DirectRows<NV, 1, R * C>(job, n, oh, out);
      row += 1;
    }
  }
}

bool DirectBand(const DirectJob& job) {
  return WithVecs<JAXCPS_DIRECT_MAX_O_VECS>(
      job.o_vecs, [&](auto nv) { DirectBandWith<decltype(nv)::value>(job); });
}

// ---------------------------------------------------------------------------------------------
// Builders (one pass over a row slot; layouts in sparse/format.h).

// CPO: one pixel's channels [0, count) of one block (from px, count <= 64), compressed at
// values/index + k with indices base + channel; bit i of `live` is set for each non-zero
// channel i. Branch-free: every value is stored and the cursor advances only past non-zeros,
// so a zero is overwritten by the next non-zero. Returns the new cursor, which never passes the
// element being read: writes stay within the elements of the block read so far.
template <bool kTrackLive>
inline uint32_t CompressPixelBlock(const float* px, int64_t count, uint32_t base, float* values,
                                   uint16_t* index, uint32_t k, uint64_t& live) {
  int64_t ch = 0;
  uint64_t bits = 0;  // a local: `live` in memory would chain every step through a store
#if JAXCPS_TILE_AVX512
  // 16 channels at a time: compress the non-zeros (NaN counts as non-zero) and their indices
  // in registers, then store them with a length mask. (A compressing store to memory is
  // microcoded and slow on some CPUs.)
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (; ch < count; ch += 16) {
    const int64_t left = count - ch;
    const __mmask16 valid = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(valid, px + ch);
    const __mmask16 nz = _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    const unsigned found = static_cast<unsigned>(__builtin_popcount(nz));
    if (kTrackLive) bits |= static_cast<uint64_t>(nz) << ch;
    const __mmask16 head = static_cast<__mmask16>((1u << found) - 1);
    _mm512_mask_storeu_ps(values + k, head, _mm512_maskz_compress_ps(nz, v));
    const __m512i idx = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(base + ch)));
    _mm256_mask_storeu_epi16(
        index + k, head, _mm512_maskz_cvtepi32_epi16(head, _mm512_maskz_compress_epi32(nz, idx)));
    k += found;
  }
#elif JAXCPS_TILE_AVX2
  // 8 channels at a time, then 4: a table turns the non-zero bitmask into the permutation that
  // moves the non-zeros (NaN counts as non-zero) to the front; all values and indices are
  // stored and the cursor advances past the non-zeros.
  for (; ch + 8 <= count; ch += 8) {
    const __m256 v = _mm256_loadu_ps(px + ch);
    const int nz = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    if (kTrackLive) bits |= static_cast<uint64_t>(nz) << ch;
    const __m128i lanes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kLeftPack8.lanes[nz]));
    _mm256_storeu_ps(values + k, _mm256_permutevar8x32_ps(v, _mm256_cvtepu8_epi32(lanes)));
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(index + k),
        _mm_add_epi16(_mm_cvtepu8_epi16(lanes), _mm_set1_epi16(static_cast<int16_t>(base + ch))));
    k += static_cast<uint32_t>(__builtin_popcount(static_cast<unsigned>(nz)));
  }
  if (ch + 4 <= count) {  // block sizes are multiples of 4: this is usually the whole tail
    const __m128 v = _mm_loadu_ps(px + ch);
    const int nz = _mm_movemask_ps(_mm_cmp_ps(v, _mm_setzero_ps(), _CMP_NEQ_UQ));
    if (kTrackLive) bits |= static_cast<uint64_t>(nz) << ch;
    int32_t lanes4;
    __builtin_memcpy(&lanes4, kLeftPack8.lanes[nz], sizeof(lanes4));
    const __m128i perm = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(lanes4));
    _mm_storeu_ps(values + k, _mm_permutevar_ps(v, perm));
    const __m128i idx = _mm_add_epi32(perm, _mm_set1_epi32(static_cast<int>(base + ch)));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(index + k), _mm_packus_epi32(idx, idx));
    k += static_cast<uint32_t>(__builtin_popcount(static_cast<unsigned>(nz)));
    ch += 4;
  }
#endif
#if !JAXCPS_TILE_AVX512
  for (; ch < count; ++ch) {
    const float v = px[ch];
    values[k] = v;
    index[k] = static_cast<uint16_t>(base + static_cast<uint32_t>(ch));
    k += v != 0.0f;
    if (kTrackLive) bits |= static_cast<uint64_t>(v != 0.0f) << ch;
  }
#endif
  if (kTrackLive) live |= bits;
  return k;
}

// Channels whose blocks BuildCpoRow builds together, pixel by pixel: a pixel's run of them is
// read at once, and written to at most this many / block size regions.
constexpr int64_t kCpoBuildChunk = 256;

// CPO: each block's non-zeros, pixel by pixel, in the block's own region of the slot (w times
// its channels, starting at w times its first channel), so the row is read once, in order.
// The pointers double as the blocks' cursors: ptr[q + 1] is written as pixel q ends.
template <bool kTrackLive>
void BuildCpoRowWith(const float* row, int64_t w, int64_t c, int64_t channels_per_group,
                     int64_t block_size, int64_t tap_rows, int64_t blocks_per_group, int64_t groups,
                     float* values, uint16_t* index, uint32_t* ptr, uint64_t* live) {
  const int64_t ptr_stride = w + 1;
  // A chunk of blocks is built pixel by pixel: its channels are one run of the pixel.
  const int64_t chunk_blocks = block_size < kCpoBuildChunk ? kCpoBuildChunk / block_size : 1;
  for (int64_t grp = 0; grp < groups; ++grp) {
    for (int64_t b0 = 0; b0 < blocks_per_group; b0 += chunk_blocks) {
      const int64_t b1 =
          b0 + chunk_blocks < blocks_per_group ? b0 + chunk_blocks : blocks_per_group;
      uint32_t* chunk_ptr = ptr + (grp * blocks_per_group + b0) * ptr_stride;
      for (int64_t b = b0; b < b1; ++b) {
        chunk_ptr[(b - b0) * ptr_stride] =
            static_cast<uint32_t>(w * (grp * channels_per_group + b * block_size));
      }
      // The chunk's live bits (chunk_blocks <= kCpoBuildChunk), on the stack while its pixels
      // are built.
      uint64_t chunk_live[kCpoBuildChunk];
      for (int64_t b = b0; kTrackLive && b < b1; ++b) chunk_live[b - b0] = 0;
      for (int64_t q = 0; q < w; ++q) {
        const float* px = row + q * c + grp * channels_per_group;
        const uint32_t base = static_cast<uint32_t>(q * tap_rows);
        uint32_t* p = chunk_ptr + q;
        for (int64_t b = b0; b < b1; ++b, p += ptr_stride) {
          const int64_t first = b * block_size;
          const int64_t count =
              channels_per_group - first < block_size ? channels_per_group - first : block_size;
          p[1] = CompressPixelBlock<kTrackLive>(px + first, count, base, values, index, p[0],
                                                chunk_live[b - b0]);
        }
      }
      if (kTrackLive) {
        for (int64_t b = b0; b < b1; ++b) live[grp * blocks_per_group + b] |= chunk_live[b - b0];
      }
    }
  }
}

void BuildCpoRow(const float* row, int64_t w, int64_t c, int64_t channels_per_group,
                 int64_t block_size, int64_t tap_rows, int64_t blocks_per_group, int64_t groups,
                 float* values, uint16_t* index, uint32_t* ptr, uint64_t* live) {
  if (live != nullptr) {
    BuildCpoRowWith<true>(row, w, c, channels_per_group, block_size, tap_rows, blocks_per_group,
                          groups, values, index, ptr, live);
  } else {
    BuildCpoRowWith<false>(row, w, c, channels_per_group, block_size, tap_rows, blocks_per_group,
                           groups, values, index, ptr, live);
  }
}

#if JAXCPS_TILE_AVX512
// One channel of a CPS row with AVX-512: its values along the row are gathered 16 columns at a
// time, the non-zeros compressed into `values`, and the runs read off the non-zero bitmask of
// 64 columns at a time (per run, not per element). A run may continue across 64-column words.
void CpsChannelRuns(const float* row, int64_t w, int64_t c, int64_t ch, float* values,
                    uint16_t* run_start, uint16_t* run_len) {
  const __m512i offsets =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int>(c)));
  uint32_t k = 0, r = 0;
  bool open = false;  // the last run found has not ended yet
  for (int64_t q0 = 0; q0 < w; q0 += 64) {
    uint64_t bits = 0;
    for (int64_t j = 0; j < 64 && q0 + j < w; j += 16) {
      const int64_t left = w - q0 - j;
      const __mmask16 valid = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
      const __m512 v =
          _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, offsets, row + (q0 + j) * c + ch, 4);
      const __mmask16 nz = _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      const unsigned count = static_cast<unsigned>(__builtin_popcount(nz));
      _mm512_mask_storeu_ps(values + k, static_cast<__mmask16>((1u << count) - 1),
                            _mm512_maskz_compress_ps(nz, v));
      k += count;
      bits |= static_cast<uint64_t>(nz) << j;
    }
    uint64_t starts = bits;
    if (open) {  // the previous run ends at this word's first zero, if it has one
      const uint64_t zeros = ~bits;
      if (zeros == 0) continue;
      const int end = __builtin_ctzll(zeros);
      run_len[r - 1] = static_cast<uint16_t>(q0 + end - run_start[r - 1]);
      open = false;
      starts &= ~uint64_t{0} << end;
    }
    while (starts != 0) {
      const int start = __builtin_ctzll(starts);
      run_start[r++] = static_cast<uint16_t>(q0 + start);
      const uint64_t zeros_after = ~bits & (~uint64_t{0} << start);
      if (zeros_after == 0) {  // runs to the end of the word, maybe beyond
        open = true;
        break;
      }
      const int end = __builtin_ctzll(zeros_after);
      run_len[r - 1] = static_cast<uint16_t>(end - start);
      starts &= ~uint64_t{0} << end;
    }
  }
  if (open) run_len[r - 1] = static_cast<uint16_t>(w - run_start[r - 1]);
}
#endif

// CPS: pass 1 counts non-zeros and run starts per channel (vectorizes along channels);
// pass 2 walks each channel along the row and writes its values and runs branch-free (as in
// BuildCpoRow, a write past the last run or value is overwritten later or lands on a slot
// position not yet used, never outside the slot).
void BuildCpsRow(const float* row, int64_t w, int64_t c, float* values, uint16_t* run_start,
                 uint16_t* run_len, uint32_t* ptr, uint32_t* vptr, uint32_t* counts) {
  uint32_t* nnz = counts;
  uint32_t* runs = counts + c;
  for (int64_t ch = 0; ch < c; ++ch) {
    const uint32_t nz = row[ch] != 0.0f;
    nnz[ch] = nz;
    runs[ch] = nz;
  }
  for (int64_t q = 1; q < w; ++q) {
    const float* px = row + q * c;
    const float* prev = px - c;
    for (int64_t ch = 0; ch < c; ++ch) {
      const uint32_t nz = px[ch] != 0.0f;
      nnz[ch] += nz;
      runs[ch] += nz & static_cast<uint32_t>(prev[ch] == 0.0f);
    }
  }
  uint32_t vtotal = 0, rtotal = 0;
  for (int64_t ch = 0; ch < c; ++ch) {
    vptr[ch] = vtotal;
    ptr[ch] = rtotal;
    vtotal += nnz[ch];
    rtotal += runs[ch];
  }
  vptr[c] = vtotal;
  ptr[c] = rtotal;
  for (int64_t ch = 0; ch < c; ++ch) {
#if JAXCPS_TILE_AVX512
    CpsChannelRuns(row, w, c, ch, values + vptr[ch], run_start + ptr[ch], run_len + ptr[ch]);
#else
    uint32_t k = vptr[ch], r = ptr[ch];
    uint32_t prev_nz = 0, length = 0;
    for (int64_t q = 0; q < w; ++q) {
      const float v = row[q * c + ch];
      const uint32_t nz = v != 0.0f;
      values[k] = v;
      k += nz;
      const uint32_t start = nz & (prev_nz ^ 1u);
      run_start[r] = static_cast<uint16_t>(q);  // kept only if a run starts here
      r += start;
      length = nz ? length + 1 : 0;
      run_len[nz ? r - 1 : r] = static_cast<uint16_t>(length);
      prev_nz = nz;
    }
#endif
  }
}

// Sparse direct: per pixel and channel block, the bitmask of non-zero channels.
void BuildMaskRow(const float* row, int64_t w, int64_t c, int64_t channels_per_group,
                  int64_t blocks_per_group, int64_t groups, uint64_t* masks) {
  for (int64_t q = 0; q < w; ++q) {
    for (int64_t grp = 0; grp < groups; ++grp) {
      const float* px = row + q * c + grp * channels_per_group;
      for (int64_t b = 0; b < blocks_per_group; ++b, ++masks) {
        const int64_t first = b * kMaskChannels;
        const int64_t count =
            channels_per_group - first < kMaskChannels ? channels_per_group - first : kMaskChannels;
        uint64_t bits = 0;
        int64_t ch = 0;
#if JAXCPS_TILE_AVX512
        for (; ch < count; ch += 16) {  // NaN counts as non-zero
          const int64_t left = count - ch;
          const __mmask16 valid = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
          const __m512 v = _mm512_maskz_loadu_ps(valid, px + first + ch);
          const __mmask16 nz = _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
          bits |= static_cast<uint64_t>(nz) << ch;
        }
#elif JAXCPS_TILE_AVX2
        const __m256 zero = _mm256_setzero_ps();
        for (; ch + 8 <= count; ch += 8) {  // NaN counts as non-zero
          const __m256 v = _mm256_loadu_ps(px + first + ch);
          const int nz = _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ));
          bits |= static_cast<uint64_t>(static_cast<unsigned>(nz)) << ch;
        }
#endif
#if !JAXCPS_TILE_AVX512
        for (; ch < count; ++ch) bits |= static_cast<uint64_t>(px[first + ch] != 0.0f) << ch;
#endif
        *masks = bits;
      }
    }
  }
}

}  // namespace

// This instruction set's kernels, as runtime/isa.cc chooses among them.
extern const SparseKernelSet kKernels = {JAXCPS_TILE_ISA,
                                         JAXCPS_CPO_MAX_O_VECS,
                                         CpoBand,
                                         CpsTile,
                                         BuildCpoRow,
                                         BuildCpsRow,
                                         kDirectRows * kDirectCols,
                                         JAXCPS_DIRECT_MAX_O_VECS,
                                         DirectBand,
                                         BuildMaskRow};

// The including file's configuration ends with it.
#undef JAXCPS_TILE_ISA
#undef JAXCPS_CPO_MAX_O_VECS
#undef JAXCPS_CPO_PAIR_MAX_O_VECS
#undef JAXCPS_DIRECT_ROWS
#undef JAXCPS_DIRECT_COLS
#undef JAXCPS_DIRECT_MAX_O_VECS
#undef JAXCPS_VEC_BYTES
#undef JAXCPS_TILE_AVX512
#undef JAXCPS_TILE_AVX2
