// The compressed activation forms of CPO and CPS. Both keep every non-zero
// exactly once and no zero, padding included; the overlap pattern of an element (which
// outputs and taps it feeds) follows from its position and is never stored. Both are built in
// one streaming pass over the NHWC input, in parallel over input rows ("slots" = image n,
// row r). Each slot has a fixed capacity of W*C entries so slots build independently;
// footprints count only what is used.
//
// CPO, pixel-major: a slot lists, pixel by pixel (column q), the non-zeros of that pixel in
//   channel order: values[k] and their channels chans[k] (uint16). Channels are cut into
//   blocks of `block` channels; ptr[(slot*W + q)*(blocks+1) + b] is the offset (in the slot)
//   of block b's first non-zero at pixel q. An all-zero block, pixel or row is an empty range:
//   skipped without touching its weights. Dead channels never appear at all.
//
// CPS, channel-major runs: a slot groups, channel by channel, the maximal runs of horizontally
//   adjacent non-zeros: run_start[j], run_len[j] (uint16) and their values contiguous;
//   ptr[slot*(C+1) + c] indexes channel c's first run and vptr its first value.
#ifndef JAXCPS_SPARSE_FORMAT_H_
#define JAXCPS_SPARSE_FORMAT_H_

#include <cstdint>
#include <string>

#include "runtime/parallel.h"
#include "runtime/workspace.h"

namespace jaxcps {

// Largest input width (and channel count) that the uint16 indices address.
constexpr int64_t kMaxSparseWidth = 65535;
// Most channels in one CPO channel block.
constexpr int64_t kCpoMaxChannelBlock = 64;

struct CpoActivation {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t block = 1;   // channels per block
  int64_t blocks = 0;  // ceil(c / block)
  Workspace<float> values;
  Workspace<uint16_t> chans;
  Workspace<uint32_t> ptr;  // per pixel: blocks + 1 offsets into its slot

  int64_t SlotCapacity() const { return w * c; }
  uint64_t NonZeros() const;
  uint64_t FootprintBytes() const;
};

struct CpsActivation {
  int64_t n = 0, h = 0, w = 0, c = 0;
  Workspace<float> values;
  Workspace<uint16_t> run_start;
  Workspace<uint16_t> run_len;
  Workspace<uint32_t> ptr;   // per slot: c + 1 run offsets
  Workspace<uint32_t> vptr;  // per slot: c + 1 value offsets

  int64_t SlotCapacity() const { return w * c; }
  uint64_t NonZeros() const;
  uint64_t Runs() const;
  uint64_t FootprintBytes() const;
};

// "" if CPO/CPS can index an input of this width and channel count, else the reason.
std::string CheckSparseShape(int64_t w, int64_t c);

// Channel block size for CPO: at most 64 channels, and never straddling a group of
// `channels_per_group` (so a block's channels share one group's weights).
int64_t CpoBlockSize(int64_t channels, int64_t groups);

// Build the compressed forms of x (NHWC, shape n,h,w,c). Return an error message or "".
std::string BuildCpo(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t block,
                     Parallel& parallel, CpoActivation* out);
std::string BuildCps(const float* x, int64_t n, int64_t h, int64_t w, int64_t c,
                     Parallel& parallel, CpsActivation* out);

}  // namespace jaxcps

#endif  // JAXCPS_SPARSE_FORMAT_H_
