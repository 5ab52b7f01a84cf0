// The compressed activation forms of CPO and CPS (DESIGN.md §3), built in one streaming pass.
//
// Both keep every non-zero exactly once and no zero, padding included. The unit of storage is
// a "row slot": one input row (image n, row r) with its W*C values regrouped channel-major, so
// that a channel's non-zeros in that row are contiguous and sorted by column. Per slot, ptr
// holds C+1 offsets; an all-zero channel (or row) has equal offsets and is skipped without
// touching its weights.
//
//   CPO: values[k], cols[k] (uint16 column of value k); ptr indexes values.
//   CPS: values[k]; runs of horizontally adjacent non-zeros as run_start[j], run_len[j]
//        (uint16); ptr indexes runs and vptr the first value of each channel's runs.
//
// Each slot has a fixed capacity of W*C entries, so slots are built independently (in
// parallel); footprint counts only what is used.
#ifndef JAXCPS_SPARSE_FORMAT_H_
#define JAXCPS_SPARSE_FORMAT_H_

#include <cstdint>
#include <string>

#include "geometry.h"
#include "parallel.h"
#include "workspace.h"

namespace jaxcps {

enum class SparseKind { kCpo, kCps };

// Largest input width that the uint16 column/run indices can address.
constexpr int64_t kMaxSparseWidth = 65535;

struct SparseActivation {
  SparseKind kind = SparseKind::kCpo;
  int64_t n = 0, h = 0, w = 0, c = 0;
  Workspace<float> values;
  Workspace<uint16_t> cols;       // CPO only
  Workspace<uint16_t> run_start;  // CPS only
  Workspace<uint16_t> run_len;    // CPS only
  Workspace<uint32_t> ptr;        // (n*h) slots x (c+1)
  Workspace<uint32_t> vptr;       // CPS only, same shape as ptr

  int64_t SlotCapacity() const { return w * c; }
  // Bytes of the representation actually in use: values, indices and pointers.
  uint64_t FootprintBytes() const;
  uint64_t NonZeros() const;
  uint64_t Runs() const;
};

// Builds the compressed form of x (NHWC, shape n,h,w,c). Returns an error message or "".
std::string BuildSparseActivation(SparseKind kind, const float* x, int64_t n, int64_t h,
                                  int64_t w, int64_t c, Parallel& parallel,
                                  SparseActivation* out);

}  // namespace jaxcps

#endif  // JAXCPS_SPARSE_FORMAT_H_
