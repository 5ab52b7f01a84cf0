"""Dense 2-D convolution in the engines a user would pick instead of jaxcps, for `--peers`.

The engines: ONNX Runtime (a one-node Conv model), OpenVINO (CPU plugin) and oneDNN through
PyTorch. Each is imported lazily in its factory; `available_engines()` says which are usable
here and why not. Only numpy is needed to import this module.

`make_dense_conv` builds the engine's convolution once and returns a `DenseConv`:
`prepare` (untimed) turns an NHWC array into the engine's native input, `run` (the part to
time) computes the convolution on it, `to_nhwc` (untimed) turns the native output into an NHWC
array. Weight layout conversion, packing and compilation all happen in the factory, so every
engine is timed on its own layout with prepared weights, which is how each runs fastest:

- onnxruntime: `InferenceSession.run` on an NCHW array, all graph optimizations, intra-op
  spinning off. Inside: ORT's own reorders of input and output to and from its blocked NCHWc
  layout, the convolution, the output array's allocation.
- openvino: `InferRequest.infer` on an NCHW array shared with the request (no input copy),
  float32 inference precision, latency hint. Inside: the plugin's reorders to and from its
  blocked layout and the convolution. The returned array is a view of the request's output
  buffer, overwritten by the next `run`.
- onednn: PyTorch's oneDNN convolution (`torch.ops.mkldnn._convolution_pointwise`, what
  `torch.compile` uses after freezing) on a channels_last tensor with weights reordered once to
  oneDNN's blocked layout; `F.pad` first when the padding is asymmetric. Eager `F.conv2d` would
  reorder the weights on every call (about 1 ms for 512x512x3x3); it is the fallback when that
  op is missing. A channels_last tensor is NHWC memory, so `prepare` and `to_nhwc` are views.

Call `configure_environment()` at program start, before anything loads OpenMP; the factories
call it too, which is enough when they import torch first.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

ENGINES: tuple[str, ...] = ("onnxruntime", "openvino", "onednn")

# Python packages each engine needs, in import order.
_REQUIRES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnx", "onnxruntime"),
    "openvino": ("openvino",),
    "onednn": ("torch",),
}

# Set before an engine is imported: OpenMP threads (PyTorch's) sleep when idle instead of spinning
# and stealing the cores from whatever runs next.
_ENVIRONMENT = {"OMP_WAIT_POLICY": "PASSIVE"}

#: The ONNX operator set of the models built here.
ONNX_OPSET = 17

Padding = str | Sequence[tuple[int, int]]
Pads = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class DenseConv:
    """One engine's compiled dense convolution.

    Attributes:
      engine: the engine's name, one of `ENGINES`.
      description: what `run` calls, with the engine's version.
      prepare: NHWC float32 array -> the engine's native input (untimed).
      run: native input -> native output; the call to time.
      to_nhwc: native output -> a new NHWC float32 array (untimed).
    """

    engine: str
    description: str
    prepare: Callable[[np.ndarray], Any]
    run: Callable[[Any], Any]
    to_nhwc: Callable[[Any], np.ndarray]

    def __call__(self, x_nhwc: np.ndarray) -> np.ndarray:
        """NHWC in, NHWC out: prepare, run and convert back."""
        return self.to_nhwc(self.run(self.prepare(x_nhwc)))


@dataclass(frozen=True)
class _Spec:
    """A resolved convolution: OIHW weights, explicit padding, NHWC input shape."""

    w_oihw: np.ndarray
    input_shape_nhwc: tuple[int, int, int, int]
    strides: tuple[int, int]
    padding: Pads
    dilation: tuple[int, int]
    groups: int
    threads: int


def configure_environment() -> dict[str, str]:
    """Sets the environment variables the engines read when they load, unless already set.

    OMP_WAIT_POLICY=PASSIVE stops PyTorch's idle OpenMP threads from spinning. OpenMP reads it
    once, when its library loads, so call this before torch (or anything else using OpenMP) is
    imported. Warns if torch is already imported. Returns the variables' values.
    """
    for name, value in _ENVIRONMENT.items():
        if name not in os.environ and "torch" in sys.modules:
            warnings.warn(f"{name} set after torch was imported; it has no effect", stacklevel=2)
        os.environ.setdefault(name, value)
    return {name: os.environ[name] for name in _ENVIRONMENT}


def _import(name: str) -> ModuleType:
    """Imports an engine's package after `configure_environment()`.

    openvino's `__init__` imports its model converter, whose telemetry forks a process to post a
    usage event (and writes ~/intel/) unless the user opted out or CI=true; CI=true is set for
    that import only.
    """
    if name in sys.modules:
        return sys.modules[name]
    configure_environment()
    if name != "openvino":
        return importlib.import_module(name)
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        return importlib.import_module(name)
    finally:
        if saved is None:
            del os.environ["CI"]
        else:
            os.environ["CI"] = saved


def missing_package(engine: str) -> str | None:
    """None if `engine`'s packages are installed, else which one is not (imports nothing)."""
    for name in _REQUIRES[engine]:
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    return None


def available_engines() -> dict[str, str | None]:
    """Engine -> None if it can be used here, else why not. Imports the engines' packages."""
    reasons: dict[str, str | None] = {}
    for engine in ENGINES:
        reason = missing_package(engine)
        if reason is None:
            try:
                for name in _REQUIRES[engine]:
                    _import(name)
            except Exception as error:  # noqa: BLE001 - any import failure makes it unusable
                reason = f"importing {name} failed: {error!r}"
        reasons[engine] = reason
    return reasons


def explicit_padding(
    padding: Padding,
    input_hw: Sequence[int],
    kernel_hw: Sequence[int],
    strides: Sequence[int] = (1, 1),
    rhs_dilation: Sequence[int] = (1, 1),
) -> Pads:
    """((top, bottom), (left, right)) for "SAME", "VALID" or explicit pairs, as lax pads.

    SAME pads so that the output size is ceil(input / stride), the odd element at the end.
    """
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return ((0, 0), (0, 0))
        if padding.upper() != "SAME":
            raise ValueError(f"padding must be 'SAME', 'VALID' or pairs, got {padding!r}")
        pads = []
        for size, k, s, d in zip(input_hw, kernel_hw, strides, rhs_dilation, strict=True):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        return (pads[0], pads[1])
    pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(pairs) != 2 or min(min(pair) for pair in pairs) < 0:
        raise ValueError(f"padding must be two non-negative (low, high) pairs, got {padding!r}")
    return (pairs[0], pairs[1])


def make_dense_conv(
    engine: str,
    w_hwio: np.ndarray,
    *,
    input_shape_nhwc: Sequence[int],
    window_strides: Sequence[int] = (1, 1),
    padding: Padding = "SAME",
    rhs_dilation: Sequence[int] = (1, 1),
    feature_group_count: int = 1,
    threads: int | None = None,
) -> DenseConv:
    """Builds `engine`'s dense float32 convolution, as `lax.conv_general_dilated` computes it.

    Args:
      engine: one of `ENGINES`.
      w_hwio: weights (kh, kw, C / groups, O), as for lax with dimension numbers NHWC/HWIO/NHWC.
      input_shape_nhwc: the shape of every input; the engines compile for it.
      window_strides: (H, W).
      padding: "SAME", "VALID" or ((top, bottom), (left, right)), non-negative.
      rhs_dilation: (H, W).
      feature_group_count: groups; C and O must be multiples of it.
      threads: intra-op threads; default: the CPUs this process may run on. oneDNN's count is
        PyTorch's, which is process-wide (`torch.set_num_threads`).

    Raises:
      ValueError: unknown engine or inconsistent shapes.
      ImportError: the engine's package is missing.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    w = np.asarray(w_hwio, dtype=np.float32)
    shape = tuple(int(d) for d in input_shape_nhwc)
    groups = int(feature_group_count)
    if w.ndim != 4 or len(shape) != 4:
        raise ValueError(f"need 4-D weights and input shape, got {w.shape} and {shape}")
    if groups < 1 or shape[3] != w.shape[2] * groups or w.shape[3] % groups:
        raise ValueError(
            f"input channels {shape[3]} != {w.shape[2]} x groups {groups}, "
            f"or output channels {w.shape[3]} not a multiple of the groups"
        )
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    strides = (int(window_strides[0]), int(window_strides[1]))
    dilation = (int(rhs_dilation[0]), int(rhs_dilation[1]))
    if min(strides + dilation) < 1:
        raise ValueError(f"strides {strides} and dilation {dilation} must be >= 1")
    pads = explicit_padding(padding, shape[1:3], w.shape[:2], strides, dilation)
    for size, (lo, hi), k, d in zip(shape[1:3], pads, w.shape[:2], dilation, strict=True):
        if size + lo + hi < (k - 1) * d + 1:
            raise ValueError(f"empty output: dilated kernel {w.shape[:2]} exceeds padded input")
    spec = _Spec(
        w_oihw=np.ascontiguousarray(w.transpose(3, 2, 0, 1)),
        input_shape_nhwc=shape,  # type: ignore[arg-type]
        strides=strides,
        padding=pads,
        dilation=dilation,
        groups=groups,
        threads=len(os.sched_getaffinity(0)) if threads is None else int(threads),
    )
    reason = missing_package(engine)
    if reason is not None:
        raise ImportError(f"engine {engine!r} is unavailable: {reason}")
    return _FACTORIES[engine](spec)


def check(y: np.ndarray, y_ref: np.ndarray, rtol: float = 1e-4) -> float:
    """max|y - y_ref| / max|y_ref|; raises AssertionError if shapes differ or it exceeds rtol."""
    y, y_ref = np.asarray(y, np.float64), np.asarray(y_ref, np.float64)
    if y.shape != y_ref.shape:
        raise AssertionError(f"shape {y.shape} != reference shape {y_ref.shape}")
    error = float(np.max(np.abs(y - y_ref), initial=0.0))
    scale = float(np.max(np.abs(y_ref), initial=0.0))
    relative = error / scale if scale else error
    if relative > rtol:
        raise AssertionError(f"max abs error {error:.3g} > {rtol:g} x max|ref| {scale:.3g}")
    return relative


def _nchw(x_nhwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x_nhwc, np.float32).transpose(0, 3, 1, 2))


def _nhwc(y_nchw: np.ndarray) -> np.ndarray:
    # Always a copy: OpenVINO's output is its request's buffer, and for C == 1 or a 1x1 output
    # the transposed view is already contiguous.
    return np.array(y_nchw.transpose(0, 2, 3, 1), order="C", copy=True)


def onnxruntime_session(model: Any, threads: int) -> Any:
    """An ONNX Runtime CPU session for an `onnx.ModelProto`, set up as every run here uses it.

    All graph optimizations (ORT then rewrites convolutions to its blocked NCHWc kernels and
    fuses activations into them), `threads` intra-op threads that sleep instead of spinning
    when idle (they would steal the cores from whatever runs next), one inter-op thread.
    """
    ort = _import("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _onnxruntime(spec: _Spec) -> DenseConv:
    onnx, ort = _import("onnx"), _import("onnxruntime")
    helper = onnx.helper
    n, h, w, c = spec.input_shape_nhwc
    (top, bottom), (left, right) = spec.padding
    conv = helper.make_node(
        "Conv",
        ["x", "w"],
        ["y"],
        kernel_shape=list(spec.w_oihw.shape[2:]),
        strides=list(spec.strides),
        pads=[top, left, bottom, right],
        dilations=list(spec.dilation),
        group=spec.groups,
    )
    graph = helper.make_graph(
        [conv],
        "conv",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [n, c, h, w])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(spec.w_oihw, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    session = onnxruntime_session(model, spec.threads)

    def run(x_nchw: np.ndarray) -> np.ndarray:
        return session.run(["y"], {"x": x_nchw})[0]

    return DenseConv("onnxruntime", f"onnxruntime {ort.__version__} Conv, NCHW", _nchw, run, _nhwc)


def _openvino(spec: _Spec) -> DenseConv:
    ov = _import("openvino")
    ops = importlib.import_module("openvino.opset1")
    n, h, w, c = spec.input_shape_nhwc
    (top, bottom), (left, right) = spec.padding
    x = ops.parameter([n, c, h, w], np.float32)
    geometry = (list(spec.strides), [top, left], [bottom, right], list(spec.dilation))
    if spec.groups == 1:
        y = ops.convolution(x, ops.constant(spec.w_oihw), *geometry)
    else:
        o, i, kh, kw = spec.w_oihw.shape
        w_goihw = spec.w_oihw.reshape(spec.groups, o // spec.groups, i, kh, kw)
        y = ops.group_convolution(x, ops.constant(w_goihw), *geometry)
    config = {
        "INFERENCE_PRECISION_HINT": "f32",  # else bf16 on CPUs with AVX512-BF16 or AMX
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": spec.threads,
    }
    request = ov.Core().compile_model(ov.Model([y], [x]), "CPU", config).create_infer_request()

    def run(x_nchw: np.ndarray) -> np.ndarray:
        return request.infer([x_nchw], share_inputs=True, share_outputs=True)[0]

    return DenseConv(
        "openvino", f"openvino {ov.__version__.split('-')[0]} CPU, NCHW", _nchw, run, _nhwc
    )


def _onednn(spec: _Spec) -> DenseConv:
    torch = _import("torch")
    torch.set_num_threads(spec.threads)
    (top, bottom), (left, right) = spec.padding
    symmetric = [min(top, bottom), min(left, right)]
    extra = (left - symmetric[1], right - symmetric[1], top - symmetric[0], bottom - symmetric[0])
    n, h, w, c = spec.input_shape_nhwc
    padded_shape = [n, c, h + extra[2] + extra[3], w + extra[0] + extra[1]]
    strides, dilation, groups = list(spec.strides), list(spec.dilation), spec.groups
    weights = torch.from_numpy(spec.w_oihw).contiguous(memory_format=torch.channels_last)
    mkldnn = torch.ops.mkldnn
    prepacked = hasattr(mkldnn, "_convolution_pointwise") and hasattr(
        mkldnn, "_reorder_convolution_weight"
    )
    if prepacked:
        weights = mkldnn._reorder_convolution_weight(
            weights, symmetric, strides, dilation, groups, padded_shape
        )

    def conv(x: Any) -> Any:
        if prepacked:
            return mkldnn._convolution_pointwise(
                x, weights, None, symmetric, strides, dilation, groups, "none", [], ""
            )
        return torch.nn.functional.conv2d(x, weights, None, strides, symmetric, dilation, groups)

    def run(x: Any) -> Any:
        with torch.inference_mode():
            return conv(torch.nn.functional.pad(x, extra) if any(extra) else x)

    def prepare(x_nhwc: np.ndarray) -> Any:
        x = np.ascontiguousarray(x_nhwc, dtype=np.float32)
        return torch.from_numpy(x).permute(0, 3, 1, 2)  # channels_last, no copy

    def to_nhwc(y: Any) -> np.ndarray:
        return np.ascontiguousarray(y.permute(0, 2, 3, 1).numpy())

    how = "mkldnn._convolution_pointwise, prepacked weights" if prepacked else "F.conv2d"
    return DenseConv(
        "onednn", f"torch {torch.__version__} {how}, channels_last", prepare, run, to_nhwc
    )


_FACTORIES: dict[str, Callable[[_Spec], DenseConv]] = {
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
    "onednn": _onednn,
}
