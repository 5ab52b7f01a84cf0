// A convolution kernel as the rest of the code sees it: its name, its traits, whether it can
// run a geometry, and how to run it. Each kernel's source file (kernels/<name>.cc) defines one
// `Kernel`; kernels/kernels.inc lists them all, and everything else (the FFI handlers, the
// Python module, the tests) is generated from that list.
//
// Kernels work on raw pointers: x is NHWC, w is HWIO, y is NHWC with the shape of a geometry
// that ConvGeometry::Derive() accepted and `supports` did not refuse. `run` returns an error
// message, or "" on success, and then has written every element of y. No FFI types here, so
// kernels can be tested and timed without JAX.
#ifndef JAXCPS_KERNELS_KERNEL_H_
#define JAXCPS_KERNELS_KERNEL_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "geometry.h"
#include "runtime/parallel.h"

namespace jaxcps {

// Named sizes of a kernel: its tiles and blocks (tests probe shapes on both sides of each)
// and its limits ("max_width", ...). Some depend on the active instruction set.
using KernelSizes = std::vector<std::pair<std::string, int64_t>>;

// Weights packed once, ahead of the calls, for a kernel that otherwise packs them into its own
// layout on every call: what the dense engines do with a model's constant weights. Only the
// weight shape (kh, kw, ci, o) and groups of a geometry matter to the layout, and the active
// instruction set's tile width, which the `layout` tag names (with a format version).
struct PreparedWeights {
  int64_t (*floats)(const ConvGeometry& g);  // size of the prepared weights of g
  int64_t (*layout)();                       // the tag of the layout on the active instruction set
  // Packs HWIO w into dst, writing every one of its floats(g) floats. Returns false, dst
  // unusable, if a weight is NaN or infinite: `run` skips zero activations and would drop the
  // NaN that lax gives there.
  bool (*prepare)(const ConvGeometry& g, const float* w, float* dst);
  // Kernel::run with `count` floats of weights prepared (by `prepare`, from finite weights) in
  // layout `layout`. Returns kStalePreparedWeights, having written nothing, if that is not the
  // active instruction set's layout; the caller then runs the kernel on the weights themselves.
  std::string (*run)(const ConvGeometry& g, const float* x, const float* prepared, int64_t count,
                     int64_t layout, float* y, Parallel& parallel);
};

// What PreparedWeights::run returns for weights prepared in another layout.
inline constexpr char kStalePreparedWeights[] = "the weights were prepared in another layout";

struct Kernel {
  const char* name;   // the `algorithm=` value; the FFI target is jaxcps_<name>_f32
  const char* brief;  // one line for humans
  bool user_facing;   // false for the test oracle ("reference")
  bool skips_zeros;   // skips zero activations (so NaN/Inf weights need care)
  // A kernel that skips zeros and checks its weights for NaN/Inf itself, while it packs them:
  // `run` then returns kNonFiniteWeights (after any partial work) and the caller runs a dense
  // kernel. The caller scans the weights first for the other kernels that skip zeros.
  bool checks_weights;
  bool uses_blas;
  // "" if the kernel can run g (already Derive()d), else the reason, naming the parameter.
  std::string (*supports)(const ConvGeometry& g);
  std::string (*run)(const ConvGeometry& g, const float* x, const float* w, float* y,
                     Parallel& parallel);
  KernelSizes (*sizes)();
  // Kernels that build a compressed form of the activation: its bytes for x (NHWC, n*h*w*c,
  // `groups` feature groups) in a convolution whose kernel is `kernel_cols` columns wide,
  // built by the kernel's own builder; on failure, the reason in *err (left empty on success).
  // nullptr for the others.
  uint64_t (*compressed_bytes)(const float* x, int64_t n, int64_t h, int64_t w, int64_t c,
                               int64_t groups, int64_t kernel_cols, std::string* err);
  const PreparedWeights* prepared;  // nullptr: the kernel packs its weights itself, per call
};

// What `run` of a kernel with checks_weights returns when a weight is NaN or infinite.
inline constexpr char kNonFiniteWeights[] = "the weights hold NaN or Inf";

// One declaration per entry of kernels.inc: kIm2col, kMec, ...
#define JAXCPS_KERNEL(Name) extern const Kernel k##Name;
#include "kernels/kernels.inc"
#undef JAXCPS_KERNEL

// Every kernel, in the order of kernels.inc.
const std::vector<const Kernel*>& AllKernels();
// The kernel called `name`, or nullptr.
const Kernel* FindKernel(const std::string& name);
// The one check before a kernel runs (the FFI handler and Python's trace-time check both use
// it): derives g's output shape and asks the kernel. "" or the reason.
std::string CheckKernel(const Kernel& kernel, ConvGeometry* g);

}  // namespace jaxcps

#endif  // JAXCPS_KERNELS_KERNEL_H_
