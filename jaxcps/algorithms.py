"""The algorithm names, what each C++ kernel can run, and the rule behind `algorithm="auto"`.

The kernels, their order, traits and sizes come from the compiled module (`_ffi.kernels()`,
generated from ffi/kernels/kernels.inc), so adding a kernel in C++ adds it here. Whether a
kernel can run a convolution is asked of C++ too (`_ffi.check`, the check its FFI handler
makes); Python adds only what C++ never sees (dimensionality, dtypes, lhs_dilation,
batch_group_count). `conv_general_dilated` raises a refusal as a `ValueError` for an
explicitly named algorithm and falls back to XLA under "auto".
"""

from __future__ import annotations

import contextvars
import dataclasses
import types
from collections.abc import Callable, Mapping

import numpy as np

from jaxcps._targets import _ffi
from jaxcps.geometry import ResolvedConv


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One C++ convolution kernel, as the compiled module describes it.

    Attributes:
      name: the `algorithm=` value that runs it.
      brief: one line on what it does.
      user_facing: False for the naive test oracle ("reference").
      skips_zeros: it skips zero activations (never multiplies a zero one, except
        sparse_direct inside a pixel block where some pixel's channel is non-zero).
      uses_blas: it multiplies with BLAS sgemm.
      compresses: it builds a compressed form of the activation (see `jaxcps.footprint`).
      prepares: it can take its weights packed once ahead of the calls (`jaxcps.prepared`).
      sizes: its tiles and blocks (tests probe both sides of each) and limits ("max_width",
        "max_channels"), for the instruction set active at import.
    """

    name: str
    brief: str
    user_facing: bool
    skips_zeros: bool
    uses_blas: bool
    compresses: bool
    prepares: bool
    sizes: Mapping[str, int]


def _read_kernels() -> dict[str, Kernel]:
    kernels = {}
    for entry in _ffi.kernels():
        kernels[entry["name"]] = Kernel(
            name=entry["name"],
            brief=entry["brief"],
            user_facing=entry["user_facing"],
            skips_zeros=entry["skips_zeros"],
            uses_blas=entry["uses_blas"],
            compresses=entry["compresses"],
            prepares=entry["prepares"],
            sizes=types.MappingProxyType(dict(entry["sizes"])),
        )
    return kernels


#: Every C++ kernel by name, in the order of ffi/kernels/kernels.inc (the oracle included).
KERNELS: Mapping[str, Kernel] = types.MappingProxyType(_read_kernels())
#: The algorithms that run a jaxcps C++ kernel.
FFI_ALGORITHMS: tuple[str, ...] = tuple(k.name for k in KERNELS.values() if k.user_facing)
#: The algorithms whose kernels skip zero activations (CPO, CPS, sparse_direct).
SPARSE_ALGORITHMS: tuple[str, ...] = tuple(a for a in FFI_ALGORITHMS if KERNELS[a].skips_zeros)
#: Those of them that build a compressed form of the activation (CPO, CPS).
COMPRESSING_ALGORITHMS: tuple[str, ...] = tuple(
    a for a in SPARSE_ALGORITHMS if KERNELS[a].compresses
)
#: Every value `algorithm=` accepts.
ALGORITHMS: tuple[str, ...] = ("xla", *FFI_ALGORITHMS, "auto")
#: Input dtypes the kernels take (float16/bfloat16 are computed in float32 and cast back).
FFI_DTYPES = (np.dtype("float32"), np.dtype("float16"), np.dtype("bfloat16"))


def check_algorithm(algorithm: str) -> None:
    """Raises ValueError unless `algorithm` is one of `ALGORITHMS`."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def unsupported_reason(algorithm: str, conv: ResolvedConv, dtype: np.dtype) -> str | None:
    """Why the C++ kernel `algorithm` cannot run this convolution, or None if it can.

    Needs only shapes, so it works at trace time on abstract values.
    """
    if conv.num_spatial != 2:
        return (
            f"algorithm={algorithm!r} runs 2-D convolutions only; this one has "
            f"{conv.num_spatial} spatial dimensions (use algorithm='xla')"
        )
    if dtype not in FFI_DTYPES:
        return (
            f"algorithm={algorithm!r} supports float32, float16 and bfloat16 inputs, got dtype "
            f"{dtype} (use algorithm='xla')"
        )
    if any(d != 1 for d in conv.lhs_dilation):
        return (
            f"lhs_dilation={conv.lhs_dilation} (transposed convolution) is not supported by "
            f"algorithm={algorithm!r}"
        )
    if conv.batch_group_count != 1:
        return f"batch_group_count={conv.batch_group_count} is not supported by algorithm={algorithm!r}"
    x_shape, w_shape = conv.native_shapes()
    (top, bottom), (left, right) = conv.padding
    reason = _ffi.check(
        algorithm,
        x_shape,
        w_shape,
        conv.window_strides,
        (top, bottom, left, right),
        conv.rhs_dilation,
        conv.feature_group_count,
    )
    if reason:
        return (
            f"algorithm={algorithm!r} cannot run this convolution: {reason} (use algorithm='xla')"
        )
    return None


# The plan hook: a function from layer name (or None) to an algorithm name, or None when the
# layer is not covered. Set by plan/routing code; read at trace time.
PlanLookup = Callable[[str | None], str | None]
_active_plan: contextvars.ContextVar[PlanLookup | None] = contextvars.ContextVar(
    "jaxcps_active_plan", default=None
)


def set_active_plan(lookup: PlanLookup | None) -> contextvars.Token:
    """Makes `lookup` answer `algorithm="auto"` in this context; returns the reset token."""
    return _active_plan.set(lookup)


def reset_active_plan(token: contextvars.Token) -> None:
    _active_plan.reset(token)


def choose_auto(name: str | None) -> str:
    """The algorithm that `algorithm="auto"` runs for the layer `name`.

    The active plan decides when it covers the layer. Without one, the rule is XLA: at trace
    time the zero fraction of the activation is unknown, and which kernel wins depends on it
    and on the layer (at 0% zeros XLA beats the sparse kernels on some layers; benchmarks/),
    so a sparse kernel is used only where a plan measured it to win.
    """
    lookup = _active_plan.get()
    if lookup is not None:
        chosen = lookup(name)
        if chosen is not None:
            return chosen
    return "xla"
