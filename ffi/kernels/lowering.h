// The one copy step shared by the lowering baselines (im2col, MEC): one kernel tap's input
// channels of one group, or zeros where the tap falls on padding.
#ifndef JAXCPS_KERNELS_LOWERING_H_
#define JAXCPS_KERNELS_LOWERING_H_

#include <cstring>

#include "geometry.h"

namespace jaxcps {

// Writes g.ci floats to dst: x[n][ih][iw][grp*ci : (grp+1)*ci], or zeros outside the input.
inline void CopyTapChannels(const ConvGeometry& g, const float* x, int64_t n, int64_t ih,
                            int64_t iw, int64_t grp, float* dst) {
  const size_t bytes = static_cast<size_t>(g.ci) * sizeof(float);
  if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) {
    std::memset(dst, 0, bytes);
  } else {
    std::memcpy(dst, x + ((n * g.h + ih) * g.w + iw) * g.c + grp * g.ci, bytes);
  }
}

}  // namespace jaxcps

#endif  // JAXCPS_KERNELS_LOWERING_H_
