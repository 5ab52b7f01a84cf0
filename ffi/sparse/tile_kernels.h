// The inner kernels of CPO and CPS, compiled once per instruction set
// (tile_kernels_<isa>.cc, from the template tile_kernels_impl.h) and chosen at run time
// (runtime/isa.cc). The drivers (kernels/cpo.cc, kernels/cps.cc) split the work and prepare these jobs.
//
// This header holds only plain data: ISA files must not share inline code with other files,
// or the linker could pick an AVX-512 copy for the scalar path.
#ifndef JAXCPS_SPARSE_TILE_KERNELS_H_
#define JAXCPS_SPARSE_TILE_KERNELS_H_

#include <cstdint>

namespace jaxcps {

// CPO: one output-row band of one image for one block of output channels (o_len of them),
// gathered pixel by pixel: the accumulators of an output pixel stay in registers while the
// non-zeros of every input pixel in its window, times the matching weight rows, are added.
// Channel blocks run outermost, so one block's weights (taps x block x o_len) stay in L2.
struct CpoJob {
  const float* values;    // compressed activation of this image (sparse/format.h)
  const uint16_t* chans;
  const uint32_t* ptr;
  int64_t h, w, blocks;
  int64_t slot_capacity;  // w * c: entries between consecutive input rows
  int64_t block_begin, block_end;  // channel blocks of this group
  int64_t c_begin;        // first input channel of this group

  const float* weights;   // &W[0][0][0][o_begin], HWIO
  int64_t tap_stride;     // ci * O: floats between consecutive taps
  int64_t o_stride;       // O: floats between consecutive input channels
  int64_t kh, kw, sh, sw, dh, dw, pad_top, pad_left;

  float* out;             // &y[n][0][0][o_begin], NHWC
  int64_t oh_begin, oh_end, ow;
  int64_t out_stride;     // O: floats between consecutive output pixels
  int64_t o_len;          // output channels in this block: a multiple of 16, or < 16
};

constexpr int64_t kTileO = 64;  // CPS: output channels per tile (accumulator row stride)

// CPS: a tile of output rows x output columns x output channels (<= kTileO) of one image and
// one group, accumulated in L1 by scattering runs. The driver precomputes each input row's and
// column's overlap pattern for the tile, so the kernel does no division and no bounds checks.
struct CpsJob {
  // Compressed activation (sparse/format.h), as raw arrays.
  const float* values;
  const uint16_t* run_start;
  const uint16_t* run_len;
  const uint32_t* ptr;        // slot-major, c_total+1 per slot
  const uint32_t* vptr;
  int64_t slot_capacity;      // w * c_total
  int64_t c_total;
  int64_t first_slot;         // slot of input row 0 of this image

  // Channels of this group and the weights (HWIO) of its first in-channel and first out-channel.
  int64_t c_begin, c_end;
  const float* weights;       // &W[0][0][0][o_begin]
  int64_t tap_stride;         // floats between taps (kh,kw) and (kh,kw+1): ci * O
  int64_t o_stride;           // O: floats between in-channels
  int64_t kw_count;
  int64_t o_len;              // <= kTileO

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

// Builders of one row slot of the compressed forms (layouts in sparse/format.h).
// CPO: row = W pixels x C channels; writes values/chans and W*(blocks+1) pointers.
using CpoRowBuilder = void (*)(const float* row, int64_t w, int64_t c, int64_t block,
                               int64_t blocks, float* values, uint16_t* chans, uint32_t* ptr);
// CPS: writes values/run_start/run_len and C+1 run and value pointers; counts is scratch for
// 2*C counters.
using CpsRowBuilder = void (*)(const float* row, int64_t w, int64_t c, float* values,
                               uint16_t* run_start, uint16_t* run_len, uint32_t* ptr,
                               uint32_t* vptr, uint32_t* counts);

struct SparseKernelSet {
  const char* isa;
  int64_t cpo_max_o_block;  // widest CPO output-channel block that fits the registers
  bool (*cpo_band)(const CpoJob&);  // false: o_len not one it can hold
  void (*cps_tile)(const CpsJob&);
  CpoRowBuilder build_cpo_row;
  CpsRowBuilder build_cps_row;
};

// Defined in tile_kernels_<isa>.cc.
namespace scalar { extern const SparseKernelSet kKernels; }
namespace avx2 { extern const SparseKernelSet kKernels; }
namespace avx512 { extern const SparseKernelSet kKernels; }

}  // namespace jaxcps

#endif  // JAXCPS_SPARSE_TILE_KERNELS_H_
