"""`jaxcps.footprint`: bytes of the representation that each algorithm builds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxcps._targets import _ffi
from jaxcps.algorithms import COMPRESSING_ALGORITHMS, FFI_ALGORITHMS
from jaxcps.geometry import ConvSpec, resolve_conv

_FLOAT_BYTES = 4

# Bytes of the float32 matrices that the lowering kernels build, padding zeros included, for
# an NHWC input shape, HWIO kernel shape and the resolved convolution.
_LoweredBytes = Callable[[Sequence[int], Sequence[int], ConvSpec], int]


def _im2col_bytes(x_shape: Sequence[int], kernel_shape: Sequence[int], spec: ConvSpec) -> int:
    n, _, _, c = x_shape
    kh, kw = kernel_shape[:2]
    _, oh, ow, _ = spec.output_shape(x_shape, kernel_shape)
    return n * oh * ow * kh * kw * c * _FLOAT_BYTES


def _mec_bytes(x_shape: Sequence[int], kernel_shape: Sequence[int], spec: ConvSpec) -> int:
    n, h, _, c = x_shape
    kw = kernel_shape[1]
    _, _, ow, _ = spec.output_shape(x_shape, kernel_shape)
    (top, bottom), _ = spec.padding
    return n * ow * max(h + top + bottom, 0) * kw * c * _FLOAT_BYTES


_LOWERED_BYTES: dict[str, _LoweredBytes] = {"im2col": _im2col_bytes, "mec": _mec_bytes}

#: The algorithms `footprint` measures: the lowering kernels above, by formula, and every
#: kernel that compresses the activation, by building its compressed form. (sparse_direct
#: reads the dense input and builds only a bit per element, so it has no entry.)
FOOTPRINT_ALGORITHMS: tuple[str, ...] = tuple(
    a for a in FFI_ALGORITHMS if a in _LOWERED_BYTES or a in COMPRESSING_ALGORITHMS
)


def footprint(
    x: Any,
    kernel_shape: Sequence[int],
    window_strides: Sequence[int],
    padding: Any,
    algorithm: str,
    *,
    rhs_dilation: Sequence[int] | None = None,
    feature_group_count: int = 1,
) -> int:
    """Bytes of the lowered or compressed form that `algorithm` builds for the activation x.

    Counts values and every index and pointer array: im2col and MEC by their formulas
    (float32 lowered matrices, padding zeros included), the kernels that skip zeros (CPO,
    CPS) by building the compressed form of the concrete x with the C++ builder the kernels
    use. The compression ratio of an algorithm is
    `footprint(..., "im2col") / footprint(..., algorithm)`.

    Example::

      >>> import numpy as np, jaxcps
      >>> x = np.zeros((1, 8, 8, 4), np.float32)
      >>> x[0, 2, 3:6, 1] = 1.0  # one run of three non-zeros
      >>> jaxcps.footprint(x, (3, 3, 4, 16), (1, 1), "SAME", "im2col")
      9216
      >>> jaxcps.footprint(x, (3, 3, 4, 16), (1, 1), "SAME", "cps")
      336

    Args:
      x: concrete activation, NHWC (N, H, W, C).
      kernel_shape: HWIO weight shape (KH, KW, C / feature_group_count, O).
      window_strides, padding, rhs_dilation, feature_group_count: as in
        `conv_general_dilated`.
      algorithm: one of `FOOTPRINT_ALGORITHMS` ("im2col", "mec", "cpo", "cps").

    Returns:
      The number of bytes.

    Raises:
      ValueError: for another algorithm, a convolution that is not 2-D, or invalid
        arguments (naming the parameter).
    """
    if algorithm not in FOOTPRINT_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {FOOTPRINT_ALGORITHMS}, got {algorithm!r}")
    x = np.asarray(x)
    conv = resolve_conv(
        x.shape,
        tuple(kernel_shape),
        window_strides,
        padding,
        rhs_dilation=rhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=feature_group_count,
    )
    if conv.num_spatial != 2:
        raise ValueError(f"footprint is defined for 2-D convolutions; x has shape {x.shape}")
    spec = conv.spec()
    if algorithm in _LOWERED_BYTES:
        return _LOWERED_BYTES[algorithm](x.shape, kernel_shape, spec)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    kernel_cols = int(kernel_shape[1])  # HWIO: CPO sizes its channel blocks to the kernel's width
    return int(_ffi.compressed_bytes(algorithm, x32, spec.feature_group_count, kernel_cols))
