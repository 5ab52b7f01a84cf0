// The inner kernels of CPO, CPS and sparse_direct, compiled once per instruction set
// (tile_kernels_<isa>.cc, from the template tile_kernels_impl.h) and chosen at run time
// (runtime/isa.cc). The drivers (kernels/cpo.cc, kernels/cps.cc, kernels/sparse_direct.cc)
// split the work and prepare these jobs.
//
// This header holds only plain data: ISA files must not share inline code with other files,
// or the linker could pick an AVX-512 copy for the scalar path.
#ifndef JAXCPS_SPARSE_TILE_KERNELS_H_
#define JAXCPS_SPARSE_TILE_KERNELS_H_

#include <cstdint>

namespace jaxcps {

// CPO: one channel block x one output-channel block over a band of output rows, gathered pixel
// by pixel: the accumulators of an output pixel (o_vecs vectors of 16 output channels) stay in
// registers while, for a kernel row, the non-zeros of the input pixels under the kernel (one
// contiguous range of the compressed row) are multiplied with their weight rows; an output row
// runs a kernel row at a time, or two output rows all kernel rows at once (pairs). The
// weights of the block are packed by the driver as [kh][kw][tap_rows][o_vecs * 16] (channels
// of the block first, zero-padded), so a non-zero's weight row for output column q0 is
//   weights + kh * kw_count * tap_rows * O + (index - q0 * tap_rows) * O,  O = o_vecs * 16,
// where q0 is the input column under the kernel's first column: no per-tap bounds checks.
struct CpoJob {
  // Compressed activation (sparse/format.h) of the whole batch.
  const float* values;
  const uint16_t* index;
  const uint32_t* ptr;
  int64_t h, w;           // input rows and columns per image
  int64_t slot_capacity;  // w * c: entries between consecutive slots (input rows)
  int64_t blocks;         // channel blocks per slot
  int64_t block;          // this channel block
  int64_t tap_rows;       // index step per column, weight rows per tap

  const float* weights;  // packed, see above
  int64_t kh_count, kw_count, sh, sw, dh, dw, pad_top, pad_left;

  // Output rows are (image, row) pairs flattened: row r is image r / oh, output row r % oh.
  int64_t oh, ow;
  int64_t row_begin, row_end;
  float* out;          // output pixel (row_begin, 0), first channel of the block
  int64_t out_stride;  // floats between consecutive output pixels
  bool accumulate;     // add to out (false: the first channel block starts from zero)
  // Where not null (the last live channel block), each pixel's finished sums go here instead of to
  // out: output pixel (row_begin, 0) like out, final_stride floats between pixels.
  float* final_out;
  int64_t final_stride;
  int64_t o_vecs;  // vectors of 16 output channels, 1..cpo_max_o_vecs
};

// Floats per vector of the tile kernels (a Vec; CPO and sparse_direct tile output channels in
// whole vectors).
constexpr int64_t kVectorLanes = 16;

constexpr int64_t kTileO = 64;  // CPS: output channels per tile (accumulator row stride)

// CPS: a tile of output rows x output columns x output channels (<= kTileO) of one image and
// one group, accumulated in L1 by scattering runs. The driver precomputes each input row's
// overlap pattern for the tile; columns are resolved per run (one division per run and tap).
struct CpsJob {
  // Compressed activation (sparse/format.h), as raw arrays.
  const float* values;
  const uint16_t* run_start;
  const uint16_t* run_len;
  const uint32_t* ptr;  // slot-major, c_total+1 per slot
  const uint32_t* vptr;
  int64_t slot_capacity;  // w * c_total
  int64_t c_total;
  int64_t first_slot;  // slot of input row 0 of this image

  // Channels of this group and the weights (HWIO) of its first in-channel and first out-channel.
  int64_t c_begin, c_end;
  const float* weights;  // &W[0][0][0][o_begin]
  int64_t tap_stride;    // floats between taps (kh,kw) and (kh,kw+1): ci * O
  int64_t o_stride;      // O: floats between in-channels
  int64_t kw_count;
  int64_t o_len;  // <= kTileO

  // Geometry along the width (column patterns are computed per run from these).
  int64_t pad_left, sw, dw, ow_begin, ow_end;

  // Overlap patterns. Rows: input rows [r_begin, r_end); row i has row_taps[i] taps,
  // stored at row_kh/row_oh[i * kh_count + t] (row_oh is relative to the tile).
  int64_t r_begin, r_end, kh_count;
  const int32_t* row_taps;
  const int32_t* row_kh;
  const int32_t* row_oh;
  // Input columns that reach the tile.
  int64_t q_begin, q_end;

  // Accumulator: tile_h x tile_w pixels, kTileO floats each, zeroed by the driver.
  float* acc;
  int64_t tile_w;
};

// Sparse direct: a band of output rows of one group and one output-channel tile (o_vecs vectors
// of 16), register-blocked over R x C output pixels (3x2 with AVX-512 and AVX2, 2x2 with
// NEON, 1x2 on the x86-64 baseline; 2 x R*C/2 or 1 x R*C on the band's or image's last rows,
// R x 1 for the last columns): their accumulators stay in registers for the whole reduction, and
// each weight row loaded serves all of them. Zeros are skipped by channel: per pixel and block of
// 64 channels, a bitmask of the non-zero channels (sparse/format.h); a channel is multiplied for a
// tap only where it is non-zero in at least one of the block's pixels under that tap (the union of
// their masks), so zeros inside the union are multiplied and all others skipped. Values are read
// from the dense input; pixels outside the input (padding, past the row end) read a zero pixel.
struct DirectJob {
  const float* x;         // input pixel (0, 0, 0), first channel of the group
  const uint64_t* masks;  // masks of pixel (0, 0, 0), first block of the group
  const float* zero_x;    // channels zeros: read for pixels outside the input
  const uint64_t* zero_masks;
  int64_t h, w;
  int64_t pixel_stride;            // floats between input pixels (C)
  int64_t mask_stride;             // masks between input pixels (every group's blocks)
  int64_t block_begin, block_end;  // the channel blocks (of 64) of this job, within the group

  // Packed weights of the tile: row (kh, kw, channel), o_vecs * 16 floats (zero-padded), at
  // weights + (kh * kw_count + kw) * tap_stride + channel * o_vecs * 16.
  const float* weights;
  int64_t tap_stride;
  int64_t kh_count, kw_count, sh, sw, dh, dw, pad_top, pad_left;

  // Output rows are (image, row) pairs flattened: row r is image r / oh, output row r % oh.
  int64_t oh, ow;
  int64_t row_begin, row_end;
  float* out;          // output pixel (row_begin, 0), first channel of the tile
  int64_t out_stride;  // floats between consecutive output pixels
  int64_t o_len;       // output channels written, <= o_vecs * 16
  int64_t o_vecs;      // 1..direct_max_o_vecs
  bool accumulate;     // add to out (false: overwrite)
};

// Channels per sparse-direct mask (bits of a uint64_t).
constexpr int64_t kMaskChannels = 64;

// Builders of one row slot of the compressed forms (layouts in sparse/format.h).
// CPO: row = W pixels x C channels, channels_per_group = C / groups; writes values/index and
// groups * blocks_per_group * (W+1) pointers and, unless live is null, ORs into live[block]
// (one word per block) bit i for each channel i of the block that is non-zero in some pixel
// (NaN counts as non-zero).
using CpoRowBuilder = void (*)(const float* row, int64_t w, int64_t c, int64_t channels_per_group,
                               int64_t block_size, int64_t tap_rows, int64_t blocks_per_group,
                               int64_t groups, float* values, uint16_t* index, uint32_t* ptr,
                               uint64_t* live);
// CPS: writes values/run_start/run_len and C+1 run and value pointers; counts is scratch for
// 2*C counters.
using CpsRowBuilder = void (*)(const float* row, int64_t w, int64_t c, float* values,
                               uint16_t* run_start, uint16_t* run_len, uint32_t* ptr,
                               uint32_t* vptr, uint32_t* counts);

// Sparse direct: for each of the w pixels of a row (pixel stride c), groups * blocks_per_group
// masks (bit i of block b of group g: channel g * channels_per_group + b * 64 + i is non-zero;
// NaN counts as non-zero).
using MaskRowBuilder = void (*)(const float* row, int64_t w, int64_t c, int64_t channels_per_group,
                                int64_t blocks_per_group, int64_t groups, uint64_t* masks);

struct SparseKernelSet {
  const char* isa;
  int64_t cpo_max_o_vecs;  // most CPO accumulator vectors (of 16 floats) the registers hold
  bool (*cpo_band)(const CpoJob&);  // false: o_vecs out of range, nothing written
  void (*cps_tile)(const CpsJob&);
  CpoRowBuilder build_cpo_row;
  CpsRowBuilder build_cps_row;
  int64_t direct_pixels;                  // output pixels per sparse-direct register block
  int64_t direct_max_o_vecs;              // most output vectors per sparse-direct tile
  bool (*direct_band)(const DirectJob&);  // false: o_vecs out of range, nothing written
  MaskRowBuilder build_mask_row;
};

// Defined by tile_kernels_impl.h as compiled in tile_kernels_<isa>.cc; only the target
// architecture's are compiled.
namespace scalar {
extern const SparseKernelSet kKernels;
}
namespace avx2 {
extern const SparseKernelSet kKernels;
}
namespace avx512 {
extern const SparseKernelSet kKernels;
}
namespace neon {
extern const SparseKernelSet kKernels;
}

}  // namespace jaxcps

#endif  // JAXCPS_SPARSE_TILE_KERNELS_H_
