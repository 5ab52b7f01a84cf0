// The compressed activation forms of CPO and CPS (and, at the end, sparse_direct's channel
// masks). Both forms keep every non-zero exactly once and no zero, padding included; the overlap
// pattern of an element (which outputs and taps it feeds) follows from its position and is never
// stored. Both are built in one streaming pass over the NHWC input, in parallel over input rows
// ("slots" = image n, row r). Each slot has a fixed capacity of W*C entries so slots build
// independently; footprints count only what is used.
//
// CPO, channel-block-major: each channel block has its own region of the slot (W times its
//   channels, at W times its first channel), which lists pixel by pixel (column q) the
//   non-zeros of that pixel's channels in the block: values[k] and index[k] =
//   q * tap_rows + (channel - first channel of the block). Blocks never straddle a feature
//   group. ptr[(slot*blocks + b)*(W+1) + q] is the offset (in the slot) of block b's first
//   non-zero at pixel q, so the non-zeros of consecutive pixels are one range,
//   and an all-zero block, pixel or row is an empty one: skipped without touching its weights.
//   The index locates the weight row of a non-zero within a block's packed weights, for every
//   kernel column at once (see CpoJob). Dead channels never appear at all.
//
// Sparse direct, channel masks: not a compressed form but an index over the dense input: per
//   pixel (n, row, column) and block b of 64 channels of group g, a uint64 whose bit i says
//   that channel 64*b + i of the group is non-zero, at
//   masks[((n*H + row)*W + column) * groups*blocks_per_group + g*blocks_per_group + b].
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
// Fewest and most channels in one CPO channel block.
constexpr int64_t kCpoMinChannelBlock = 4;
constexpr int64_t kCpoMaxChannelBlock = 64;

struct CpoActivation {
  int64_t n = 0, h = 0, w = 0, c = 0;
  int64_t groups = 1;
  int64_t block_size = 1;        // channels per block (the last block of a group may have fewer)
  int64_t blocks_per_group = 0;  // ceil((c / groups) / block_size)
  int64_t tap_rows = 1;          // index step per column = weight rows per tap (see BuildCpo)
  Workspace<float> values;
  Workspace<uint16_t> index;  // q * tap_rows + channel within the block (< 65536)
  Workspace<uint32_t> ptr;    // per slot and block: w + 1 offsets into the slot
  // Per block: bit i set if its channel i is non-zero somewhere in the batch or, if built
  // without per-channel liveness, for every channel of a block with a non-zero.
  Workspace<uint64_t> live;

  int64_t Blocks() const { return groups * blocks_per_group; }
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

struct ChannelMasks {
  int64_t groups = 1;
  int64_t blocks_per_group = 0;  // ceil((c / groups) / 64)
  Workspace<uint64_t> masks;
  Workspace<uint64_t> live;  // PixelStride() masks: the channels non-zero anywhere in x

  int64_t PixelStride() const { return groups * blocks_per_group; }
};

// "" if CPO/CPS can index an input of this width and channel count, else the reason.
std::string CheckSparseShape(int64_t w, int64_t c);

// Channel block size for CPO at the non-zero fraction `density`, for a kernel `kernel_cols`
// columns wide: enough channels that a block holds a few non-zeros per pixel (so the work per
// pixel and block outweighs its fixed cost), and more while one kernel row's packed weights
// still fit L1 (the kernel gathers a kernel row at a time), within [kCpoMinChannelBlock,
// kCpoMaxChannelBlock], at most the channels of a group, and small enough that every index
// (column * tap rows + channel) of a row of `width` columns fits 16 bits.
int64_t CpoBlockSize(double density, int64_t channels_per_group, int64_t width,
                     int64_t kernel_cols);
// Fraction of non-zeros in x (n*h*w*c floats), estimated from at most 16K of them spread
// evenly over x; deterministic.
double EstimateDensity(const float* x, int64_t n, int64_t h, int64_t w, int64_t c);

// Build the compressed forms (or the masks) of x (NHWC, shape n,h,w,c). Return an error
// message or "".
// BuildCpo finds the live channels of each block with live_channels, else only the live
// blocks (a cheaper build).
std::string BuildCpo(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t groups,
                     int64_t block_size, bool live_channels, Parallel& parallel,
                     CpoActivation* out);
std::string BuildMasks(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t groups,
                       Parallel& parallel, ChannelMasks* out);
std::string BuildCps(const float* x, int64_t n, int64_t h, int64_t w, int64_t c, Parallel& parallel,
                     CpsActivation* out);

}  // namespace jaxcps

#endif  // JAXCPS_SPARSE_FORMAT_H_
