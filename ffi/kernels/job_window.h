// The convolution window that the CPO and sparse-direct jobs (sparse/tile_kernels.h) carry,
// copied from the geometry in one place.
#ifndef JAXCPS_KERNELS_JOB_WINDOW_H_
#define JAXCPS_KERNELS_JOB_WINDOW_H_

#include "geometry.h"

namespace jaxcps {

template <typename Job>
void SetJobWindow(const ConvGeometry& g, Job* job) {
  job->kh_count = g.kh;
  job->kw_count = g.kw;
  job->sh = g.sh;
  job->sw = g.sw;
  job->dh = g.dh;
  job->dw = g.dw;
  job->pad_top = g.pad_top;
  job->pad_left = g.pad_left;
  job->oh = g.oh;
  job->ow = g.ow;
}

}  // namespace jaxcps

#endif  // JAXCPS_KERNELS_JOB_WINDOW_H_
