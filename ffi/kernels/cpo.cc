// CPO driver: build the pixel-major compressed activation (sparse/format.h) and run the ISA
// gather kernel (CpoBand) over independent pieces of the output.
//
// A piece is (image, group, block of output channels, band of output rows): pieces write
// disjoint outputs, so threads never conflict. The output-channel block is as wide as the
// ISA keeps in registers (128 floats with AVX-512); inside a piece, channel blocks of the
// input run outermost so their weights stay in L2, and each output pixel's accumulators stay
// in registers while the non-zeros of its window are gathered (each non-zero is stored once;
// its overlap pattern is implied by its position).
#include <algorithm>
#include <atomic>
#include <vector>

#include "kernels/kernel.h"
#include "runtime/build_profile.h"
#include "runtime/isa.h"
#include "sparse/format.h"
#include "sparse/tile_kernels.h"

namespace jaxcps {

namespace {

constexpr int64_t kLanes = 16;

struct OutputBlock {
  int64_t offset, length;  // within a group's output channels
};

// Splits og output channels into blocks of at most max_block, each a multiple of 16 except a
// last one of fewer than 16 (the kernels' narrow path).
std::vector<OutputBlock> SplitOutputChannels(int64_t og, int64_t max_block) {
  std::vector<OutputBlock> blocks;
  int64_t offset = 0;
  while (og - offset >= kLanes) {
    const int64_t length = std::min(max_block, (og - offset) / kLanes * kLanes);
    blocks.push_back({offset, length});
    offset += length;
  }
  if (offset < og) blocks.push_back({offset, og - offset});
  return blocks;
}

std::string Supports(const ConvGeometry& g) { return CheckSparseShape(g.w, g.c); }

std::string Run(const ConvGeometry& g, const float* x, const float* w, float* y,
                   Parallel& parallel) {
  if (g.n == 0 || g.oh == 0 || g.ow == 0 || g.o == 0) return {};
  if (g.ci == 0) {  // no input channels: every output is an empty sum
    std::fill(y, y + g.n * g.oh * g.ow * g.o, 0.0f);
    return {};
  }
  CpoActivation act;
  std::string err;
  {
    BuildProfileScope profile;
    err = BuildCpo(x, g.n, g.h, g.w, g.c, CpoBlockSize(g.c, g.groups), parallel, &act);
  }
  if (!err.empty()) return err;

  const SparseKernelSet& kernels = ActiveSparseKernels();
  const std::vector<OutputBlock> o_blocks =
      SplitOutputChannels(g.OutPerGroup(), kernels.cpo_max_o_block);
  const int64_t per_image = g.groups * static_cast<int64_t>(o_blocks.size());
  // Enough bands for about four pieces per thread; fewer bands reuse weights longer.
  const int64_t wanted = (4 * parallel.NumThreads() + g.n * per_image - 1) / (g.n * per_image);
  const int64_t band_rows = (g.oh + std::clamp<int64_t>(wanted, 1, g.oh) - 1) /
                            std::clamp<int64_t>(wanted, 1, g.oh);
  const int64_t bands = (g.oh + band_rows - 1) / band_rows;
  const int64_t pieces = g.n * per_image * bands;
  const int64_t blocks_per_group = act.blocks / g.groups;

  std::atomic<bool> failed{false};
  ForEachChunk(parallel, pieces, WorkerCount(parallel, pieces), [&](int64_t piece, int64_t) {
    const int64_t band = piece % bands;
    const OutputBlock& ob = o_blocks[(piece / bands) % o_blocks.size()];
    const int64_t grp = (piece / (bands * o_blocks.size())) % g.groups;
    const int64_t n = piece / (bands * per_image);
    const int64_t o_begin = grp * g.OutPerGroup() + ob.offset;

    CpoJob job;
    job.values = act.values.data() + n * g.h * act.SlotCapacity();
    job.chans = act.chans.data() + n * g.h * act.SlotCapacity();
    job.ptr = act.ptr.data() + n * g.h * g.w * (act.blocks + 1);
    job.h = g.h;
    job.w = g.w;
    job.blocks = act.blocks;
    job.slot_capacity = act.SlotCapacity();
    job.block_begin = grp * blocks_per_group;
    job.block_end = (grp + 1) * blocks_per_group;
    job.c_begin = grp * g.ci;
    job.weights = w + o_begin;
    job.tap_stride = g.ci * g.o;
    job.o_stride = g.o;
    job.kh = g.kh;
    job.kw = g.kw;
    job.sh = g.sh;
    job.sw = g.sw;
    job.dh = g.dh;
    job.dw = g.dw;
    job.pad_top = g.pad_top;
    job.pad_left = g.pad_left;
    job.out = y + n * g.oh * g.ow * g.o + o_begin;
    job.oh_begin = band * band_rows;
    job.oh_end = std::min(g.oh, job.oh_begin + band_rows);
    job.ow = g.ow;
    job.out_stride = g.o;
    job.o_len = ob.length;
    if (!kernels.cpo_band(job)) failed.store(true, std::memory_order_relaxed);
  });
  if (failed.load()) return "internal error: an output-channel block wider than the registers";
  return {};
}

KernelSizes Sizes() {
  return {{"channel_block", kCpoMaxChannelBlock},
          {"o_lanes", kLanes},
          {"max_o_block", ActiveSparseKernels().cpo_max_o_block},
          {"max_width", kMaxSparseWidth},
          {"max_channels", kMaxSparseWidth}};
}

}  // namespace

extern const Kernel kCpo = {"cpo", "Compressed Pattern Overlap: per-pixel gather of non-zeros",
                            /*user_facing=*/true, /*skips_zeros=*/true, /*uses_blas=*/false,
                            Supports, Run, Sizes};

}  // namespace jaxcps
