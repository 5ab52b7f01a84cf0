// The nanobind module jaxcps._ffi: FFI handler capsules for jaxcps/_targets.py, the exact
// footprint of the CPO/CPS compressed forms, and the run-time instruction-set switch.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <type_traits>

#include "blas.h"
#include "build_profile.h"
#include "handlers.h"
#include "isa.h"
#include "sparse_format.h"

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
#define X(name, Name) d[#name] = EncapsulateHandler(Ffi##Name);
#include "kernels.inc"
#undef X
  return d;
}

using Activation = nb::ndarray<const float, nb::ndim<4>, nb::c_contig, nb::device::cpu>;

// Builds the compressed form that `algorithm` ("cpo" or "cps") makes of x (NHWC) in a
// convolution with `groups` feature groups, with the kernels' own builder. Returns its bytes.
uint64_t BuildCompressed(const std::string& algorithm, const Activation& x, int64_t groups,
                         Parallel& parallel) {
  const int64_t n = static_cast<int64_t>(x.shape(0)), h = static_cast<int64_t>(x.shape(1));
  const int64_t w = static_cast<int64_t>(x.shape(2)), c = static_cast<int64_t>(x.shape(3));
  if (groups < 1 || c % groups != 0) {
    throw nb::value_error("groups must be >= 1 and divide the channels");
  }
  std::string err;
  uint64_t bytes = 0;
  if (algorithm == "cpo") {
    CpoActivation act;
    err = BuildCpo(x.data(), n, h, w, c, CpoBlockSize(c, groups), parallel, &act);
    bytes = act.FootprintBytes();
  } else if (algorithm == "cps") {
    CpsActivation act;
    err = BuildCps(x.data(), n, h, w, c, parallel, &act);
    bytes = act.FootprintBytes();
  } else {
    err = "algorithm must be 'cpo' or 'cps', got '" + algorithm + "'";
  }
  if (!err.empty()) throw nb::value_error(err.c_str());
  return bytes;
}

uint64_t CompressedBytes(const std::string& algorithm, Activation x, int64_t groups) {
  SerialParallel serial;
  return BuildCompressed(algorithm, x, groups, serial);
}

}  // namespace
}  // namespace jaxcps

NB_MODULE(_ffi, m) {
  m.doc() = "jaxcps C++ kernels: XLA FFI handlers for im2col, MEC, CPO, CPS and a reference.";
  jaxcps::SetBlasSingleThreaded();
  m.def("registrations", &jaxcps::Registrations,
        "Algorithm name -> XLA FFI handler capsule, one per entry of ffi/kernels.inc.");
  m.def("compressed_bytes", &jaxcps::CompressedBytes, nb::arg("algorithm"), nb::arg("x"),
        nb::arg("groups") = 1,
        "Bytes (values, indices, pointers) of the CPO or CPS form of x (float32 NHWC).");
  m.def("build_profile", [](bool enable) {
        jaxcps::EnableBuildProfile(enable);
        const jaxcps::BuildProfileTotals totals = jaxcps::TakeBuildProfile();
        return nb::make_tuple(totals.builds, totals.seconds);
      }, nb::arg("enable"),
      "Turns timing of the CPO/CPS compressed-form builds on or off; returns (builds, seconds)"
      " accumulated since the previous call, and resets them.");
  m.def("supported_isas", &jaxcps::SupportedIsas,
        "Instruction sets for the sparse kernels that this CPU supports.");
  m.def("active_isa", [] { return std::string(jaxcps::ActiveSparseKernels().isa); },
        "Instruction set the sparse kernels use now.");
  m.def("set_isa", [](const std::string& isa) {
        const std::string err = jaxcps::SetSparseIsa(isa);
        if (!err.empty()) throw nb::value_error(err.c_str());
      }, nb::arg("isa"), "Force the sparse kernels onto one instruction set (for tests).");
}
