// Validation and output-shape arithmetic for ConvGeometry (mirrors jaxcps/geometry.py).
#include "geometry.h"

namespace jaxcps {

namespace {
// Sizes above this are refused: every index product below stays far from int64 overflow.
constexpr int64_t kMaxDim = int64_t{1} << 31;

std::string Bad(const char* name, int64_t value, const char* what) {
  return std::string(name) + " = " + std::to_string(value) + ": " + what;
}

std::string BadPair(const char* name, int64_t lo, int64_t hi, const char* axis, int64_t size) {
  return std::string(name) + " = (" + std::to_string(lo) + ", " + std::to_string(hi) +
         "): negative padding larger than the " + axis + " (" + std::to_string(size) + ")";
}
}  // namespace

int64_t ConvOutputSize(int64_t padded, int64_t extent, int64_t stride) {
  if (padded < extent) return 0;
  return (padded - extent) / stride + 1;
}

std::string ConvGeometry::Derive() {
  const struct {
    const char* name;
    int64_t value;
  } dims[] = {{"batch", n},
              {"height", h},
              {"width", w},
              {"channels", c},
              {"kernel_height", kh},
              {"kernel_width", kw},
              {"kernel_in_channels", ci},
              {"out_channels", o}};
  for (const auto& d : dims) {
    if (d.value < 0 || d.value >= kMaxDim) return Bad(d.name, d.value, "out of range [0, 2^31)");
  }
  if (kh < 1) return Bad("kernel_height", kh, "must be >= 1");
  if (kw < 1) return Bad("kernel_width", kw, "must be >= 1");
  if (sh < 1 || sh >= kMaxDim) return Bad("window_strides[0]", sh, "must be >= 1");
  if (sw < 1 || sw >= kMaxDim) return Bad("window_strides[1]", sw, "must be >= 1");
  if (dh < 1 || dh >= kMaxDim) return Bad("rhs_dilation[0]", dh, "must be >= 1");
  if (dw < 1 || dw >= kMaxDim) return Bad("rhs_dilation[1]", dw, "must be >= 1");
  if (groups < 1 || groups >= kMaxDim) return Bad("feature_group_count", groups, "must be >= 1");
  const int64_t pads[] = {pad_top, pad_bottom, pad_left, pad_right};
  for (int64_t p : pads) {
    if (p <= -kMaxDim || p >= kMaxDim) return Bad("padding", p, "out of range");
  }
  // lax's rule: the padded size may not be negative (each side alone may exceed the size,
  // e.g. (-4, 2) on a height of 3 pads to 1 row of zeros). Mirrors jaxcps/geometry.py.
  if (PaddedH() < 0) return BadPair("padding[0]", pad_top, pad_bottom, "height", h);
  if (PaddedW() < 0) return BadPair("padding[1]", pad_left, pad_right, "width", w);
  if (c % groups != 0) return Bad("feature_group_count", groups, "must divide the input channels");
  if (ci * groups != c) {
    return "kernel in-channels (" + std::to_string(ci) + ") x feature_group_count (" +
           std::to_string(groups) + ") must equal the input channels (" + std::to_string(c) + ")";
  }
  if (o % groups != 0) return Bad("feature_group_count", groups, "must divide the output channels");
  oh = ConvOutputSize(PaddedH(), KernelExtentH(), sh);
  ow = ConvOutputSize(PaddedW(), KernelExtentW(), sw);
  return {};
}

}  // namespace jaxcps
