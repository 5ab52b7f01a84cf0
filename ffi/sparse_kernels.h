// The inner tile kernels of CPO and CPS, compiled once per instruction set
// (sparse_kernels_<isa>.cc) and chosen at run time (isa.cc).
//
// A tile is a block of output rows x output columns x output channels (at most kTileO) of one
// image and one group. Its accumulator lives in L1. The driver (sparse_conv.cc) precomputes
// each input row's and column's overlap pattern for the tile (which taps reach which tile
// outputs), so the kernels do no division and no bounds checks.
//
// This header holds only plain data: ISA files must not share inline code with other files,
// or the linker could pick an AVX-512 copy for the scalar path.
#ifndef JAXCPS_SPARSE_KERNELS_H_
#define JAXCPS_SPARSE_KERNELS_H_

#include <cstdint>

namespace jaxcps {

constexpr int64_t kTileO = 64;  // output channels per tile (accumulator row stride)

struct TileJob {
  // Compressed activation (sparse_format.h) of the current image, as raw arrays.
  const float* values;
  const uint16_t* cols;       // CPO
  const uint16_t* run_start;  // CPS
  const uint16_t* run_len;    // CPS
  const uint32_t* ptr;        // slot-major, c_total+1 per slot
  const uint32_t* vptr;       // CPS
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

  // Geometry along the width (CPS computes column patterns per run from these).
  int64_t pad_left, sw, dw, ow_begin, ow_end;

  // Overlap patterns. Rows: input rows [r_begin, r_end); row i has row_taps[i] taps,
  // stored at row_kh/row_oh[i * kh_count + t] (row_oh is relative to the tile).
  int64_t r_begin, r_end, kh_count;
  const int32_t* row_taps;
  const int32_t* row_kh;
  const int32_t* row_oh;
  // Columns: input columns [q_begin, q_end); column j has col_taps[j] taps at
  // col_kw/col_ow[j * kw_count + t] (col_ow relative to the tile).
  int64_t q_begin, q_end;
  const int32_t* col_taps;
  const int32_t* col_kw;
  const int32_t* col_ow;

  // Accumulator: tile_h x tile_w pixels, kTileO floats each, zeroed by the driver.
  float* acc;
  int64_t tile_w;
};

using TileKernel = void (*)(const TileJob&);

struct SparseKernelSet {
  const char* isa;
  TileKernel cpo_tile;
  TileKernel cps_tile;
};

// Defined in sparse_kernels_<isa>.cc.
namespace scalar { extern const SparseKernelSet kKernels; }
namespace avx2 { extern const SparseKernelSet kKernels; }
namespace avx512 { extern const SparseKernelSet kKernels; }

}  // namespace jaxcps

#endif  // JAXCPS_SPARSE_KERNELS_H_
