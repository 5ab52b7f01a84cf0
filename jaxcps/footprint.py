"""`jaxcps.footprint`: bytes of the representation that each algorithm builds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxcps._targets import _ffi
from jaxcps.algorithms import FFI_ALGORITHMS
from jaxcps.geometry import resolve_conv

_FLOAT_BYTES = 4


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
    (float32 lowered matrices, padding zeros included), CPO and CPS by building the
    compressed form of the concrete x with the C++ builder the kernels use. The compression
    ratio of an algorithm is `footprint(..., "im2col") / footprint(..., algorithm)`.

    Args:
      x: concrete activation, NHWC (N, H, W, C).
      kernel_shape: HWIO weight shape (KH, KW, C / feature_group_count, O).
      window_strides, padding, rhs_dilation, feature_group_count: as in
        `conv_general_dilated`.
      algorithm: "im2col", "mec", "cpo" or "cps".

    Returns:
      The number of bytes.
    """
    if algorithm not in FFI_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {FFI_ALGORITHMS}, got {algorithm!r}")
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
    n, h, _, c = x.shape
    kh, kw = kernel_shape[:2]
    _, oh, ow, _ = spec.output_shape(x.shape, kernel_shape)
    (pt, pb), _ = spec.padding
    if algorithm == "im2col":
        return n * oh * ow * kh * kw * c * _FLOAT_BYTES
    if algorithm == "mec":
        return n * ow * max(h + pt + pb, 0) * kw * c * _FLOAT_BYTES
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    return int(_ffi.compressed_bytes(algorithm, x32, spec.feature_group_count))
