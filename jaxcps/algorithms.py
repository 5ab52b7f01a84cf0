"""The algorithm names, what each FFI kernel can run, and the rule behind `algorithm="auto"`.

`unsupported_reason` is the one place that says which configurations a kernel cannot run;
`conv_general_dilated` raises it as a `ValueError` for an explicitly named algorithm and falls
back to XLA under "auto".
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable

import numpy as np

from jaxcps.geometry import ResolvedConv

#: Every value `algorithm=` accepts.
ALGORITHMS: tuple[str, ...] = ("xla", "im2col", "mec", "cpo", "cps", "auto")
#: The algorithms that run a jaxcps C++ kernel.
FFI_ALGORITHMS: tuple[str, ...] = ("im2col", "mec", "cpo", "cps")
#: Input dtypes the kernels take (float16/bfloat16 are computed in float32 and cast back).
FFI_DTYPES = (np.dtype("float32"), np.dtype("float16"), np.dtype("bfloat16"))
#: Largest input width and channel count that the CPO/CPS 16-bit indices address
#: (kMaxSparseWidth in ffi/sparse_format.h).
MAX_SPARSE_INDEX = 65535


def check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def unsupported_reason(algorithm: str, conv: ResolvedConv, dtype: np.dtype) -> str | None:
    """Why the FFI kernel `algorithm` cannot run this convolution, or None if it can."""
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
    if algorithm in ("cpo", "cps") and max(conv.input_width, conv.input_channels) > MAX_SPARSE_INDEX:
        return (
            f"input width {conv.input_width} or channels {conv.input_channels} exceed "
            f"{MAX_SPARSE_INDEX}, the largest that algorithm={algorithm!r} indexes"
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
    time the zero fraction of the activation is unknown, and XLA's dense convolution is
    faster than every kernel here unless most activations are zero (benchmarks/), so a
    sparse kernel is used only where a plan measured it to win.
    """
    lookup = _active_plan.get()
    if lookup is not None:
        chosen = lookup(name)
        if chosen is not None:
            return chosen
    return "xla"
