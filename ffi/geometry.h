// ConvGeometry: the shape arithmetic of one 2-D convolution, decoded once from the buffers
// and attributes of an FFI call. Mirrors jaxcps/geometry.py; tests check that both agree.
//
// Layouts: activations NHWC, weights HWIO (I = C / groups), output NHWC.
#ifndef JAXCPS_GEOMETRY_H_
#define JAXCPS_GEOMETRY_H_

#include <cstdint>
#include <string>

namespace jaxcps {

struct ConvGeometry {
  int64_t n = 0, h = 0, w = 0, c = 0;     // input
  int64_t kh = 0, kw = 0, ci = 0, o = 0;  // weights (ci = input channels per group)
  int64_t sh = 1, sw = 1;                 // window strides
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;  // may be negative
  int64_t dh = 1, dw = 1;                                            // rhs (kernel) dilation
  int64_t groups = 1;                                                // feature_group_count
  int64_t oh = 0, ow = 0;                                            // output, derived by Derive()

  int64_t OutPerGroup() const { return o / groups; }
  // Extent of the dilated kernel.
  int64_t KernelExtentH() const { return (kh - 1) * dh + 1; }
  int64_t KernelExtentW() const { return (kw - 1) * dw + 1; }
  int64_t PaddedH() const { return h + pad_top + pad_bottom; }
  int64_t PaddedW() const { return w + pad_left + pad_right; }

  // Checks every field and computes oh/ow. Returns an empty string when valid, otherwise a
  // message naming the offending parameter.
  std::string Derive();
};

// Output size of one spatial axis, as lax computes it: max((padded - extent) / stride + 1, 0).
int64_t ConvOutputSize(int64_t padded, int64_t extent, int64_t stride);

}  // namespace jaxcps

#endif  // JAXCPS_GEOMETRY_H_
