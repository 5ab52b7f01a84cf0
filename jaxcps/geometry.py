"""Shape arithmetic and validation of a 2-D convolution, in one place.

Mirrors `ffi/geometry.cc` (tests check that both agree): `ConvSpec` is the resolved,
hashable description of the convolution that the kernels run (NHWC activations, HWIO
weights), and `resolve_conv` turns the arguments of `jax.lax.conv_general_dilated` into it,
raising `ValueError` (naming the parameter) on anything invalid.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from jax import lax

PADDING_NAMES = ("SAME", "VALID", "SAME_LOWER")


def output_size(padded: int, extent: int, stride: int) -> int:
    """Output length of one spatial axis, as lax computes it."""
    if padded < extent:
        return 0
    return (padded - extent) // stride + 1


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A 2-D convolution in the kernels' native layout, with everything resolved.

    Hashable, so that it can be a static argument of `jax.jit`.
    """

    window_strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    rhs_dilation: tuple[int, int] = (1, 1)
    feature_group_count: int = 1

    def output_shape(self, x_shape: Sequence[int], w_shape: Sequence[int]) -> tuple[int, ...]:
        """NHWC output shape for an NHWC input and HWIO weights."""
        n, h, w, _ = x_shape
        kh, kw, _, o = w_shape
        (pt, pb), (pl, pr) = self.padding
        dh, dw = self.rhs_dilation
        oh = output_size(h + pt + pb, (kh - 1) * dh + 1, self.window_strides[0])
        ow = output_size(w + pl + pr, (kw - 1) * dw + 1, self.window_strides[1])
        return (n, oh, ow, o)

    def ffi_attributes(self) -> dict[str, Any]:
        """Attributes of the FFI call, each cast to the exact type its C++ handler decodes
        (int64 arrays and an int64 scalar; a Python tuple would not decode)."""
        (pt, pb), (pl, pr) = self.padding
        return dict(
            window_strides=np.asarray(self.window_strides, np.int64),
            padding=np.asarray((pt, pb, pl, pr), np.int64),
            rhs_dilation=np.asarray(self.rhs_dilation, np.int64),
            feature_group_count=np.int64(self.feature_group_count),
        )


@dataclasses.dataclass(frozen=True)
class ResolvedConv:
    """A validated call of `conv_general_dilated`, in any number of spatial dimensions.

    `lhs_shape`/`rhs_shape` are the operand shapes as given; `lhs_perm`/`rhs_perm` move the
    operands to N,spatial...,C and spatial...,I,O; `out_perm` moves an N,spatial...,O result
    back to the caller's layout.
    """

    num_spatial: int
    window_strides: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    feature_group_count: int
    batch_group_count: int
    dimension_numbers: lax.ConvDimensionNumbers
    lhs_perm: tuple[int, ...]
    rhs_perm: tuple[int, ...]
    out_perm: tuple[int, ...]
    lhs_shape: tuple[int, ...]
    rhs_shape: tuple[int, ...]

    def spec(self) -> ConvSpec:
        """The 2-D `ConvSpec` that the kernels run (only for num_spatial == 2)."""
        return ConvSpec(
            window_strides=(self.window_strides[0], self.window_strides[1]),
            padding=(self.padding[0], self.padding[1]),
            rhs_dilation=(self.rhs_dilation[0], self.rhs_dilation[1]),
            feature_group_count=self.feature_group_count,
        )

    def native_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The operand shapes in the kernels' layout: (N, spatial..., C), (spatial..., I, O)."""
        return (
            tuple(int(self.lhs_shape[d]) for d in self.lhs_perm),
            tuple(int(self.rhs_shape[d]) for d in self.rhs_perm),
        )


def _int(value: Any, name: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _positive_ints(
    value: Any, count: int, name: str, default: int | None = None
) -> tuple[int, ...]:
    if value is None and default is not None:
        return (default,) * count
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of {count} integers, got {value!r}") from None
    if len(items) != count:
        raise ValueError(
            f"{name} must have {count} entries (one per spatial dimension), got {value!r}"
        )
    ints = tuple(_int(v, name) for v in items)
    if any(v < 1 for v in ints):
        raise ValueError(f"{name} entries must be >= 1, got {value!r}")
    return ints


def _resolve_padding(
    padding: Any,
    in_spatial: Sequence[int],
    kernel_extent: Sequence[int],
    strides: Sequence[int],
    lhs_dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    count = len(in_spatial)
    if isinstance(padding, str):
        name = padding.upper()
        if name not in PADDING_NAMES:
            raise ValueError(
                f"padding must be one of {PADDING_NAMES} or a sequence of (low, high) pairs, "
                f"got {padding!r}"
            )
        dilated_in = [(d - 1) * ld + 1 if d > 0 else 0 for d, ld in zip(in_spatial, lhs_dilation)]
        pads = lax.padtype_to_pads(dilated_in, kernel_extent, strides, name)
        return tuple((int(lo), int(hi)) for lo, hi in pads)
    try:
        pairs = tuple(tuple(p) for p in padding)
    except TypeError:
        raise ValueError(
            f"padding must be one of {PADDING_NAMES} or a sequence of {count} (low, high) pairs, "
            f"got {padding!r}"
        ) from None
    if len(pairs) != count or any(len(p) != 2 for p in pairs):
        raise ValueError(f"padding must have {count} (low, high) pairs, got {padding!r}")
    resolved = tuple((_int(lo, "padding"), _int(hi, "padding")) for lo, hi in pairs)
    # lax's rule: the padded (lhs-dilated) size may not be negative. Checking each side alone
    # against the size, as before, accepted (-3, -3) on a size of 3, which lax refuses, and
    # refused (-4, 2), which lax accepts (tests/test_errors.py, tests/test_geometry.py).
    for (lo, hi), size, ld in zip(resolved, in_spatial, lhs_dilation):
        dilated = (size - 1) * ld + 1 if size > 0 else 0
        if dilated + lo + hi < 0:
            raise ValueError(
                f"padding {padding!r}: negative padding larger than the input size {size}"
            )
    return resolved


def resolve_conv(
    lhs_shape: Sequence[int],
    rhs_shape: Sequence[int],
    window_strides: Any,
    padding: Any,
    lhs_dilation: Any = None,
    rhs_dilation: Any = None,
    dimension_numbers: Any = None,
    feature_group_count: Any = 1,
    batch_group_count: Any = 1,
) -> ResolvedConv:
    """Validates the arguments of `lax.conv_general_dilated` and resolves them.

    Raises:
      ValueError: naming the parameter, for anything `lax.conv_general_dilated` would also
        reject (wrong ranks, channel mismatch, non-positive strides, malformed padding, ...).
    """
    lhs_shape, rhs_shape = tuple(lhs_shape), tuple(rhs_shape)
    if len(lhs_shape) < 3 or len(lhs_shape) != len(rhs_shape):
        raise ValueError(
            f"lhs and rhs must have the same rank, at least 3 (batch, feature, spatial...); "
            f"got lhs shape {lhs_shape} and rhs shape {rhs_shape}"
        )
    num_spatial = len(lhs_shape) - 2
    try:
        dn = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
    except (TypeError, ValueError) as e:
        raise ValueError(f"dimension_numbers {dimension_numbers!r} is invalid: {e}") from None
    strides = _positive_ints(window_strides, num_spatial, "window_strides")
    lhs_dil = _positive_ints(lhs_dilation, num_spatial, "lhs_dilation", default=1)
    rhs_dil = _positive_ints(rhs_dilation, num_spatial, "rhs_dilation", default=1)
    groups = _int(feature_group_count, "feature_group_count")
    batch_groups = _int(batch_group_count, "batch_group_count")
    if groups < 1:
        raise ValueError(f"feature_group_count must be >= 1, got {groups}")
    if batch_groups < 1:
        raise ValueError(f"batch_group_count must be >= 1, got {batch_groups}")
    if groups > 1 and batch_groups > 1:
        raise ValueError("feature_group_count and batch_group_count cannot both be > 1")

    batch = lhs_shape[dn.lhs_spec[0]]
    in_channels = lhs_shape[dn.lhs_spec[1]]
    out_channels = rhs_shape[dn.rhs_spec[0]]
    kernel_in = rhs_shape[dn.rhs_spec[1]]
    if in_channels != kernel_in * groups:
        raise ValueError(
            f"input channels ({in_channels}) must equal the kernel's input channels "
            f"({kernel_in}) x feature_group_count ({groups})"
        )
    if out_channels % groups != 0:
        raise ValueError(
            f"feature_group_count ({groups}) must divide the output channels ({out_channels})"
        )
    if batch % batch_groups != 0 or out_channels % batch_groups != 0:
        raise ValueError(
            f"batch_group_count ({batch_groups}) must divide the batch ({batch}) and the "
            f"output channels ({out_channels})"
        )
    in_spatial = [lhs_shape[d] for d in dn.lhs_spec[2:]]
    kernel_spatial = [rhs_shape[d] for d in dn.rhs_spec[2:]]
    extent = [(k - 1) * d + 1 if k > 0 else 0 for k, d in zip(kernel_spatial, rhs_dil)]
    pads = _resolve_padding(padding, in_spatial, extent, strides, lhs_dil)

    lhs_perm = (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1])
    rhs_perm = (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0])
    # Result axis out_spec[k] holds the k-th axis of (N, O, spatial...), which in our
    # N, spatial..., O result sits at position (0, last, 1, 2, ...).
    native_axis_of = (0, num_spatial + 1, *range(1, num_spatial + 1))
    out_perm = [0] * (num_spatial + 2)
    for k, axis in enumerate(dn.out_spec):
        out_perm[axis] = native_axis_of[k]
    return ResolvedConv(
        num_spatial=num_spatial,
        window_strides=strides,
        padding=pads,
        lhs_dilation=lhs_dil,
        rhs_dilation=rhs_dil,
        feature_group_count=groups,
        batch_group_count=batch_groups,
        dimension_numbers=dn,
        lhs_perm=lhs_perm,
        rhs_perm=rhs_perm,
        out_perm=tuple(out_perm),
        lhs_shape=lhs_shape,
        rhs_shape=rhs_shape,
    )


def crop_negative_padding(
    lhs_shape: Sequence[int], conv: ResolvedConv
) -> tuple[tuple[slice, ...], tuple[tuple[int, int], ...]]:
    """The same padded input as `conv.padding`, as a slice of the input and padding >= 0.

    XLA:CPU reads out of bounds for float32 convolutions with negative low padding
    (openxla/xla#48713, jaxlib 0.10.2); cropping first avoids that code path. Valid only
    without lhs_dilation (negative padding then trims the undilated input).
    """
    index = [slice(None)] * len(lhs_shape)
    pads = []
    for axis, (lo, hi) in zip(conv.dimension_numbers.lhs_spec[2:], conv.padding):
        size = lhs_shape[axis]
        start, stop = max(-lo, 0), size - max(-hi, 0)
        if start >= stop:  # nothing of the input is left: an all-zero padded input
            index[axis] = slice(0, 0)
            pads.append((max(size + lo + hi, 0), 0))
        else:
            index[axis] = slice(start, stop)
            pads.append((max(lo, 0), max(hi, 0)))
    return tuple(index), tuple(pads)
