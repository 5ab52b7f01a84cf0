"""`jaxcps.geometry` (shape arithmetic and validation) agrees with lax and with the C++ mirror
in ffi/geometry.cc: on random configurations, the Python output shape equals
`jax.eval_shape(lax.conv_general_dilated, ...)`, Python refuses exactly what lax refuses,
and the FFI targets accept the Python-computed output shape.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest
from conftest import (
    FFI_ALGORITHMS,
    NATIVE_DN,
    TARGETS,
    assert_close,
    ffi_conv,
    lax_conv,
    sparse_activation,
    weights,
)
from jax import lax

import jaxcps
from jaxcps.geometry import output_size, resolve_conv

PADDINGS = ("SAME", "VALID", "SAME_LOWER")
LAYOUTS = [
    ("NHWC", "HWIO", "NHWC"),
    ("NCHW", "OIHW", "NCHW"),
    ("NHWC", "OIHW", "NCHW"),
    ("CHWN", "IOHW", "HWNC"),
]


def random_config(
    rng: np.random.Generator, allow_invalid: bool, layout: tuple[str, str, str] | None = None
) -> dict[str, Any]:
    """A random 2-D convolution in `layout` (default: a random one): shapes in that layout,
    strides, padding, dilations and groups. Degenerate sizes (batch 0, outputs of size 0)
    included; with `allow_invalid`, explicit paddings may crop past the input."""
    groups = int(rng.choice([1, 1, 2, 3]))
    n = int(rng.integers(0, 4))
    h, w = (int(v) for v in rng.integers(1, 14, size=2))
    c = groups * int(rng.integers(1, 4))
    o = groups * int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
    kind = int(rng.integers(4))
    if kind < 3:
        padding: Any = PADDINGS[kind]
    else:
        pairs = []
        for size in (h, w):
            lo, hi = (int(v) for v in rng.integers(-size - 2, 8, size=2))
            if not allow_invalid:
                hi = max(hi, -size - lo)  # padded size >= 0, what lax accepts
            pairs.append((lo, hi))
        padding = tuple(pairs)
    lhs_spec, rhs_spec, out_spec = layout or LAYOUTS[int(rng.integers(len(LAYOUTS)))]
    x_dims = dict(N=n, H=h, W=w, C=c)
    w_dims = dict(H=kh, W=kw, I=c // groups, O=o)
    return dict(
        lhs_shape=tuple(x_dims[d] for d in lhs_spec),
        rhs_shape=tuple(w_dims[d] for d in rhs_spec),
        window_strides=tuple(int(v) for v in rng.integers(1, 5, size=2)),
        padding=padding,
        rhs_dilation=tuple(int(v) for v in rng.choice([1, 1, 2, 3], size=2)),
        dimension_numbers=(lhs_spec, rhs_spec, out_spec),
        feature_group_count=groups,
    )


def lax_shape(cfg: dict[str, Any]) -> tuple[int, ...]:
    lhs = jax.ShapeDtypeStruct(cfg["lhs_shape"], np.float32)
    rhs = jax.ShapeDtypeStruct(cfg["rhs_shape"], np.float32)
    args = {
        k: v
        for k, v in cfg.items()
        if k not in ("lhs_shape", "rhs_shape", "window_strides", "padding")
    }
    return jax.eval_shape(
        lambda a, b: lax.conv_general_dilated(a, b, cfg["window_strides"], cfg["padding"], **args),
        lhs,
        rhs,
    ).shape


def python_shape(cfg: dict[str, Any]) -> tuple[int, ...]:
    conv = resolve_conv(
        cfg["lhs_shape"],
        cfg["rhs_shape"],
        cfg["window_strides"],
        cfg["padding"],
        rhs_dilation=cfg["rhs_dilation"],
        dimension_numbers=cfg["dimension_numbers"],
        feature_group_count=cfg["feature_group_count"],
    )
    x_native = tuple(cfg["lhs_shape"][d] for d in conv.lhs_perm)
    w_native = tuple(cfg["rhs_shape"][d] for d in conv.rhs_perm)
    native = conv.spec().output_shape(x_native, w_native)
    return tuple(native[d] for d in conv.out_perm)


def test_output_size() -> None:
    assert output_size(7, 3, 1) == 5
    assert output_size(7, 3, 2) == 3
    assert output_size(7, 3, 3) == 2
    assert output_size(3, 3, 5) == 1
    assert output_size(2, 3, 1) == 0
    assert output_size(0, 1, 1) == 0


def test_output_shape_matches_lax() -> None:
    rng = np.random.default_rng(11)
    for _ in range(400):
        cfg = random_config(rng, allow_invalid=False)
        assert python_shape(cfg) == lax_shape(cfg), cfg


def test_validation_matches_lax() -> None:
    """Python refuses a configuration exactly when lax does (paddings cropping past the
    input included) and otherwise computes lax's shape."""
    rng = np.random.default_rng(12)
    refused = 0
    for _ in range(300):
        cfg = random_config(rng, allow_invalid=True)
        try:
            want = lax_shape(cfg)
        except (TypeError, ValueError):
            refused += 1
            with pytest.raises(ValueError, match="padding"):
                python_shape(cfg)
            continue
        assert python_shape(cfg) == want, cfg
    assert refused >= 10  # the draw does reach lax's limit


def test_ffi_accepts_python_output_shape() -> None:
    """The C++ mirror (ConvGeometry::Derive) accepts every shape Python computes: each target,
    called with that output shape, runs and matches lax."""
    rng = np.random.default_rng(13)
    for i in range(40):
        cfg = random_config(rng, allow_invalid=False, layout=NATIVE_DN)
        x = sparse_activation(rng, cfg["lhs_shape"], 0.5)
        w = weights(rng, cfg["rhs_shape"])
        kwargs = dict(
            rhs_dilation=cfg["rhs_dilation"],
            dimension_numbers=NATIVE_DN,
            feature_group_count=cfg["feature_group_count"],
        )
        spec = resolve_conv(
            x.shape, w.shape, cfg["window_strides"], cfg["padding"], **kwargs
        ).spec()
        algorithm = TARGETS[i % len(TARGETS)]
        got = ffi_conv(algorithm, x, w, spec, out_shape=python_shape(cfg))
        want = lax_conv(x, w, cfg["window_strides"], cfg["padding"], **kwargs)
        assert_close(got, want, f"{algorithm} {cfg}")


# Regression: geometry.py and ffi/geometry.cc refused a negative padding larger than the
# input on one side even when the other side made the padded size non-negative, which lax
# accepts, and accepted (-3, -3) on a size of 3, which lax refuses. (lax's own values for
# these paddings are wrong, openxla/xla#48713; `lax_conv` crops the input instead.)
@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_negative_padding_follows_lax(algorithm: str, rng: np.random.Generator) -> None:
    x = sparse_activation(rng, (2, 3, 5, 4), 0.3)
    w = weights(rng, (2, 2, 4, 6))
    for padding in [((-4, 3), (0, 0)), ((1, 1), (-6, 2)), ((-3, 3), (-5, 4))]:
        want = lax_conv(x, w, (1, 1), padding, dimension_numbers=NATIVE_DN)
        got = jaxcps.conv_general_dilated(
            x, w, (1, 1), padding, dimension_numbers=NATIVE_DN, algorithm=algorithm
        )
        assert_close(got, want, f"{algorithm} padding {padding}")
    for padding in [((-2, -2), (0, 0)), ((0, 0), (-3, -3))]:
        with pytest.raises(ValueError):
            lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NATIVE_DN)
        with pytest.raises(ValueError, match="padding"):
            jaxcps.conv_general_dilated(
                x, w, (1, 1), padding, dimension_numbers=NATIVE_DN, algorithm=algorithm
            )
