// The convolution algorithms, on raw pointers: x is NHWC, w is HWIO, y is NHWC with the
// shape of a geometry that ConvGeometry::Derive() accepted. Each returns an error message, or
// an empty string on success, and writes every element of y. No FFI types here, so kernels can
// be tested and timed without JAX.
#ifndef JAXCPS_ALGORITHMS_H_
#define JAXCPS_ALGORITHMS_H_

#include <string>

#include "geometry.h"
#include "parallel.h"

namespace jaxcps {

// Checks that `algorithm` can run this geometry (beyond Derive()): "" or the reason.
std::string Im2colSupports(const ConvGeometry& g);
std::string MecSupports(const ConvGeometry& g);
std::string CpoSupports(const ConvGeometry& g);
std::string CpsSupports(const ConvGeometry& g);
std::string ReferenceSupports(const ConvGeometry& g);

std::string RunIm2col(const ConvGeometry& g, const float* x, const float* w, float* y, Parallel& p);
std::string RunMec(const ConvGeometry& g, const float* x, const float* w, float* y, Parallel& p);
std::string RunCpo(const ConvGeometry& g, const float* x, const float* w, float* y, Parallel& p);
std::string RunCps(const ConvGeometry& g, const float* x, const float* w, float* y, Parallel& p);
std::string RunReference(const ConvGeometry& g, const float* x, const float* w, float* y,
                         Parallel& p);

}  // namespace jaxcps

#endif  // JAXCPS_ALGORITHMS_H_
