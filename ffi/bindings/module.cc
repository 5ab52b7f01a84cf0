// The nanobind module jaxcps._ffi: the list of kernels with their traits, the check whether a
// kernel can run a convolution (the same one the FFI handlers make), FFI handler capsules for
// jaxcps/_targets.py, weights prepared in a kernel's own layout, the exact footprint of the
// CPO/CPS compressed forms, and the run-time instruction-set switch.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <type_traits>

#include "bindings/handlers.h"
#include "kernels/kernel.h"
#include "runtime/blas.h"
#include "runtime/build_profile.h"
#include "runtime/isa.h"
#include "runtime/pages.h"
#include "runtime/workspace.h"
#include "sparse/format.h"

namespace nb = nanobind;

namespace jaxcps {
namespace {

template <typename T>
nb::capsule EncapsulateHandler(T* fn) {
  static_assert(std::is_invocable_r_v<XLA_FFI_Error*, T, XLA_FFI_CallFrame*>,
                "an XLA FFI handler must take an XLA_FFI_CallFrame*");
  return nb::capsule(reinterpret_cast<void*>(fn));
}

nb::dict Registrations() {
  nb::dict d;
#define JAXCPS_KERNEL(Name) d[k##Name.name] = EncapsulateHandler(Ffi##Name);
#include "kernels/kernels.inc"
#undef JAXCPS_KERNEL
  return d;
}

nb::list Kernels() {
  nb::list kernels;
  for (const Kernel* kernel : AllKernels()) {
    nb::dict sizes;
    for (const auto& [name, value] : kernel->sizes()) sizes[name.c_str()] = value;
    nb::dict d;
    d["name"] = kernel->name;
    d["brief"] = kernel->brief;
    d["user_facing"] = kernel->user_facing;
    d["skips_zeros"] = kernel->skips_zeros;
    d["uses_blas"] = kernel->uses_blas;
    d["compresses"] = kernel->compressed_bytes != nullptr;
    d["prepares"] = kernel->prepared != nullptr;
    d["sizes"] = sizes;
    kernels.append(d);
  }
  return kernels;
}

using Dims4 = std::array<int64_t, 4>;
using Dims2 = std::array<int64_t, 2>;

// Why `algorithm` cannot run this convolution (NHWC x, HWIO w; padding top, bottom, left,
// right), or "" if it can: CheckKernel, as the FFI handler calls it.
std::string Check(const std::string& algorithm, Dims4 x, Dims4 w, Dims2 strides, Dims4 padding,
                  Dims2 dilation, int64_t groups) {
  const Kernel* kernel = FindKernel(algorithm);
  if (kernel == nullptr) throw nb::value_error(("unknown kernel '" + algorithm + "'").c_str());
  ConvGeometry g;
  g.n = x[0], g.h = x[1], g.w = x[2], g.c = x[3];
  g.kh = w[0], g.kw = w[1], g.ci = w[2], g.o = w[3];
  g.sh = strides[0], g.sw = strides[1];
  g.pad_top = padding[0], g.pad_bottom = padding[1], g.pad_left = padding[2],
  g.pad_right = padding[3];
  g.dh = dilation[0], g.dw = dilation[1];
  g.groups = groups;
  return CheckKernel(*kernel, &g);
}

using HwioWeights = nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;

// Kernel `algorithm`'s prepared weights of HWIO w with `groups` feature groups, as
// (float32 array, layout), or None if a weight is NaN or infinite.
nb::object PrepareWeights(const std::string& algorithm, HwioWeights w, int64_t groups) {
  const Kernel* kernel = FindKernel(algorithm);
  if (kernel == nullptr || kernel->prepared == nullptr) {
    throw nb::value_error(("kernel '" + algorithm + "' takes no prepared weights").c_str());
  }
  ConvGeometry g;
  g.kh = static_cast<int64_t>(w.shape(0)), g.kw = static_cast<int64_t>(w.shape(1));
  g.ci = static_cast<int64_t>(w.shape(2)), g.o = static_cast<int64_t>(w.shape(3));
  g.groups = groups;
  if (groups < 1 || g.o % groups != 0 || g.o == 0 || g.ci == 0 || g.kh == 0 || g.kw == 0) {
    throw nb::value_error("weights need a non-empty shape whose out-channels groups divides");
  }
  const int64_t floats = kernel->prepared->floats(g);
  float* data = new float[static_cast<size_t>(floats)];  // every float written by `prepare`
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<float*>(p); });
  if (!kernel->prepared->prepare(g, w.data(), data)) return nb::none();
  const size_t shape[1] = {static_cast<size_t>(floats)};
  return nb::make_tuple(nb::ndarray<nb::numpy, float, nb::ndim<1>>(data, 1, shape, owner),
                        kernel->prepared->layout());
}

using Activation = nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;

// x's NHWC dimensions, after checking the convolution's `groups` and `kernel_cols` against it
// (ValueError naming the parameter).
struct ActivationDims {
  int64_t n, h, w, c;
};
ActivationDims CheckActivation(const Activation& x, int64_t groups, int64_t kernel_cols) {
  const ActivationDims d = {static_cast<int64_t>(x.shape(0)), static_cast<int64_t>(x.shape(1)),
                            static_cast<int64_t>(x.shape(2)), static_cast<int64_t>(x.shape(3))};
  if (groups < 1 || d.c % groups != 0) {
    throw nb::value_error("groups must be >= 1 and divide the channels");
  }
  if (kernel_cols < 1) throw nb::value_error("kernel_cols must be >= 1");
  return d;
}

// The channel block size CPO chooses for x (NHWC) in a convolution with `groups` groups and a
// kernel `kernel_cols` columns wide.
int64_t CpoChannelBlock(Activation x, int64_t groups, int64_t kernel_cols) {
  const ActivationDims d = CheckActivation(x, groups, kernel_cols);
  return CpoBlockSize(EstimateDensity(x.data(), d.n, d.h, d.w, d.c), d.c / groups, d.w,
                      kernel_cols);
}

// Bytes of the compressed form that kernel `algorithm` builds of x (NHWC) in a convolution with
// `groups` feature groups and a kernel `kernel_cols` columns wide, built by the kernel's own
// builder.
uint64_t CompressedBytes(const std::string& algorithm, Activation x, int64_t groups,
                         int64_t kernel_cols) {
  const Kernel* kernel = FindKernel(algorithm);
  if (kernel == nullptr || kernel->compressed_bytes == nullptr) {
    throw nb::value_error(("kernel '" + algorithm + "' builds no compressed form").c_str());
  }
  const ActivationDims d = CheckActivation(x, groups, kernel_cols);
  std::string err;
  const uint64_t bytes =
      kernel->compressed_bytes(x.data(), d.n, d.h, d.w, d.c, groups, kernel_cols, &err);
  if (!err.empty()) throw nb::value_error(err.c_str());
  return bytes;
}

}  // namespace
}  // namespace jaxcps

NB_MODULE(_ffi, m) {
  m.doc() = "jaxcps C++ kernels as XLA FFI handlers, and what Python asks of them.";
  jaxcps::SetBlasSingleThreaded();
  m.def("kernels", &jaxcps::Kernels,
        "The kernels in the order of ffi/kernels/kernels.inc, each a dict: name, brief, "
        "user_facing, skips_zeros, uses_blas, compresses, prepares, sizes (tile sizes and limits "
        "by name).");
  m.def("check", &jaxcps::Check, nb::arg("algorithm"), nb::arg("x_shape"), nb::arg("w_shape"),
        nb::arg("window_strides"), nb::arg("padding"), nb::arg("rhs_dilation"),
        nb::arg("feature_group_count"),
        "Why kernel `algorithm` cannot run the convolution of NHWC x_shape with HWIO w_shape "
        "(padding: top, bottom, left, right), or '' if it can. The FFI handler makes the same "
        "check.");
  m.def("registrations", &jaxcps::Registrations,
        "Algorithm name -> XLA FFI handler capsule, one per kernel.");
  m.def(
      "prepared_registration", [] { return jaxcps::EncapsulateHandler(jaxcps::FfiPrepared); },
      "The XLA FFI handler capsule for every kernel's prepared weights.");
  m.def("prepare_weights", &jaxcps::PrepareWeights, nb::arg("algorithm"), nb::arg("w"),
        nb::arg("groups") = 1,
        "Kernel `algorithm`'s prepared weights of w (float32 HWIO) with `groups` feature "
        "groups: (1-D float32 array, layout), or None if a weight is NaN or infinite.");
  m.def("compressed_bytes", &jaxcps::CompressedBytes, nb::arg("algorithm"), nb::arg("x"),
        nb::arg("groups"), nb::arg("kernel_cols"),
        "Bytes (values, indices, pointers) of the compressed form that kernel `algorithm` "
        "builds of x (float32 NHWC) for a convolution with `groups` feature groups and a "
        "kernel `kernel_cols` columns wide; ValueError for a kernel that builds none.");
  m.def("cpo_channel_block", &jaxcps::CpoChannelBlock, nb::arg("x"), nb::arg("groups"),
        nb::arg("kernel_cols"),
        "Channels per block of the CPO form of x (float32 NHWC) for a convolution with "
        "`groups` feature groups and a kernel `kernel_cols` columns wide: chosen from x's "
        "density.");
  m.def(
      "build_profile",
      [](bool enable) {
        jaxcps::EnableBuildProfile(enable);
        const jaxcps::BuildProfileTotals totals = jaxcps::TakeBuildProfile();
        return nb::make_tuple(totals.builds, totals.seconds);
      },
      nb::arg("enable"),
      "Turns timing of the compressed-form (and sparse_direct mask) builds on or off; returns "
      "(builds, seconds)"
      " accumulated since the previous call, and resets them.");
  m.def("compiled_isas", &jaxcps::CompiledIsas,
        "Instruction sets for the sparse kernels compiled into this build, portable first.");
  m.def(
      "workspace_cache",
      [] { return nb::make_tuple(jaxcps::CachedBytes(), jaxcps::MaxCachedBytes()); },
      "(bytes, cap): large workspace blocks kept between calls, and the most it keeps.");
  m.def(
      "huge_page_advice", [] { return jaxcps::HugePageAdviceCount(); },
      "How many times the handlers have asked Linux to back a fresh output with huge pages.");
  m.def("supported_isas", &jaxcps::SupportedIsas,
        "Instruction sets for the sparse kernels that this CPU supports.");
  m.def(
      "active_isa", [] { return std::string(jaxcps::ActiveSparseKernels().isa); },
      "Instruction set the sparse kernels use now.");
  m.def(
      "set_isa",
      [](const std::string& isa) {
        const std::string err = jaxcps::SetSparseIsa(isa);
        if (!err.empty()) throw nb::value_error(err.c_str());
      },
      nb::arg("isa"), "Force the sparse kernels onto one instruction set (for tests).");
}
