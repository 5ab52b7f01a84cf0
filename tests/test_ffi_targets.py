"""The C++ second line of defence: each FFI target, called directly with shapes or attributes
that Python validation would have refused, returns a clean error (`JaxRuntimeError` with
INVALID_ARGUMENT and a message naming the parameter): no crash, no abort, no garbage.

Eager `ffi_call` caches executables by attribute value (an int32 attribute equal to a valid
int64 one would reuse the valid executable), so every case here uses its own shapes or values.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest
from conftest import FFI_ALGORITHMS, assert_close, lax_conv

from jaxcps import _targets
from jaxcps.algorithms import unsupported_reason
from jaxcps.geometry import ConvSpec, resolve_conv

TARGETS = (*FFI_ALGORITHMS, "reference")


def call_target(
    algorithm: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    *,
    x_dtype: Any = np.float32,
    drop: tuple[str, ...] = (),
    **overrides: Any,
) -> jax.Array:
    """Calls the target of `algorithm` on ones, with the attributes of a stride-1 unpadded
    convolution, replaced by `overrides` and without the names in `drop`."""
    attrs = ConvSpec((1, 1), ((0, 0), (0, 0))).ffi_attributes()
    attrs.update(overrides)
    for name in drop:
        del attrs[name]
    call = jax.ffi.ffi_call(
        _targets.target_name(algorithm), jax.ShapeDtypeStruct(out_shape, np.float32)
    )
    return call(np.ones(x_shape, x_dtype), np.ones(w_shape, np.float32), **attrs)


def i64(*values: int) -> np.ndarray:
    return np.asarray(values, np.int64)


#: (id, call arguments, message pattern). x is N,H,W,C; w is KH,KW,Ci,O; out N,OH,OW,O,
#: never empty (XLA skips a custom call whose result has no elements).
BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    (
        "output-shape",
        dict(x_shape=(1, 5, 5, 2), w_shape=(3, 3, 2, 4), out_shape=(1, 4, 3, 4)),
        "output buffer shape",
    ),
    (
        "output-channels",
        dict(x_shape=(1, 5, 6, 2), w_shape=(3, 3, 2, 4), out_shape=(1, 3, 4, 5)),
        "output buffer shape",
    ),
    (
        "channel-mismatch",
        dict(x_shape=(1, 5, 5, 4), w_shape=(3, 3, 3, 4), out_shape=(1, 3, 3, 4)),
        "in-channels",
    ),
    (
        "stride-zero",
        dict(
            x_shape=(1, 6, 5, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 6, 5, 3),
            window_strides=i64(0, 1),
        ),
        r"window_strides\[0\]",
    ),
    (
        "stride-negative",
        dict(
            x_shape=(1, 6, 6, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 6, 6, 3),
            window_strides=i64(1, -2),
        ),
        r"window_strides\[1\]",
    ),
    (
        "strides-3-entries",
        dict(
            x_shape=(1, 7, 5, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 7, 5, 3),
            window_strides=i64(1, 1, 1),
        ),
        "window_strides must have 2",
    ),
    (
        "padding-3-entries",
        dict(
            x_shape=(1, 7, 6, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 7, 6, 3),
            padding=i64(0, 0, 0),
        ),
        "padding must have 4",
    ),
    (
        "padding-crops-past-height",
        dict(
            x_shape=(1, 4, 5, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 1, 5, 3),
            padding=i64(-3, -2, 0, 0),
        ),
        r"padding\[0\]",
    ),
    (
        "padding-crops-past-width",
        dict(
            x_shape=(1, 5, 4, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 5, 1, 3),
            padding=i64(0, 0, -9, 0),
        ),
        r"padding\[1\]",
    ),
    (
        "dilation-zero",
        dict(
            x_shape=(1, 8, 5, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 8, 5, 3),
            rhs_dilation=i64(1, 0),
        ),
        "rhs_dilation",
    ),
    (
        "dilation-1-entry",
        dict(
            x_shape=(1, 8, 6, 2), w_shape=(1, 1, 2, 3), out_shape=(1, 8, 6, 3), rhs_dilation=i64(1)
        ),
        "rhs_dilation must have 2",
    ),
    (
        "groups-not-dividing-channels",
        dict(
            x_shape=(1, 5, 5, 4),
            w_shape=(1, 1, 1, 3),
            out_shape=(1, 5, 5, 3),
            feature_group_count=np.int64(3),
        ),
        "feature_group_count",
    ),
    (
        "groups-not-dividing-outputs",
        dict(
            x_shape=(1, 5, 6, 4),
            w_shape=(1, 1, 2, 5),
            out_shape=(1, 5, 6, 5),
            feature_group_count=np.int64(2),
        ),
        "feature_group_count",
    ),
    (
        "groups-zero",
        dict(
            x_shape=(1, 5, 7, 4),
            w_shape=(1, 1, 4, 5),
            out_shape=(1, 5, 7, 5),
            feature_group_count=np.int64(0),
        ),
        "feature_group_count",
    ),
    (
        "zero-kernel",
        dict(x_shape=(1, 5, 8, 2), w_shape=(0, 1, 2, 3), out_shape=(1, 6, 8, 3)),
        "kernel_height",
    ),
    # Decoding failures: wrong rank, wrong dtype, an int32 attribute, a missing attribute.
    ("x-rank-3", dict(x_shape=(5, 5, 2), w_shape=(1, 1, 2, 3), out_shape=(1, 5, 5, 3)), "decode"),
    (
        "x-float16",
        dict(
            x_shape=(1, 9, 5, 2), w_shape=(1, 1, 2, 3), out_shape=(1, 9, 5, 3), x_dtype=np.float16
        ),
        "decode",
    ),
    (
        "strides-int32",
        dict(
            x_shape=(1, 9, 7, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 2, 2, 3),
            window_strides=np.asarray((7, 5), np.int32),
        ),
        "decode|attribute",
    ),
    (
        "missing-attribute",
        dict(
            x_shape=(1, 9, 9, 2),
            w_shape=(1, 1, 2, 3),
            out_shape=(1, 9, 9, 3),
            drop=("rhs_dilation",),
        ),
        "attribute",
    ),
]


@pytest.mark.parametrize("algorithm", TARGETS)
@pytest.mark.parametrize("name,kwargs,pattern", BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
def test_bad_call_is_a_clean_error(
    algorithm: str, name: str, kwargs: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(jax.errors.JaxRuntimeError, match=pattern):
        call_target(algorithm, **kwargs).block_until_ready()


def test_mec_height_dilation_python_and_cpp_agree() -> None:
    """The C++ MEC target refuses a height dilation (naming rhs_dilation) exactly when the
    Python side declares it unsupported; otherwise it computes it."""
    spec = ConvSpec((1, 1), ((0, 0), (0, 0)), rhs_dilation=(2, 1))
    conv = resolve_conv(
        (1, 9, 4, 2),
        (2, 1, 2, 3),
        (1, 1),
        "VALID",
        rhs_dilation=(2, 1),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    assert conv.spec() == spec
    x = np.random.default_rng(6).standard_normal((1, 9, 4, 2)).astype(np.float32)
    w = np.random.default_rng(7).standard_normal((2, 1, 2, 3)).astype(np.float32)
    call = jax.ffi.ffi_call(
        _targets.target_name("mec"), jax.ShapeDtypeStruct((1, 7, 4, 3), np.float32)
    )
    if unsupported_reason("mec", conv, np.dtype(np.float32)) is not None:
        with pytest.raises(jax.errors.JaxRuntimeError, match="rhs_dilation"):
            call(x, w, **spec.ffi_attributes()).block_until_ready()
    else:
        want = lax_conv(
            x, w, (1, 1), "VALID", rhs_dilation=(2, 1), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        assert_close(call(x, w, **spec.ffi_attributes()), want, "mec, height dilation 2")


def test_error_under_jit() -> None:
    f = jax.jit(lambda: call_target("cpo", (1, 4, 4, 3), (3, 3, 2, 4), (1, 2, 2, 4)))
    with pytest.raises(jax.errors.JaxRuntimeError, match="in-channels"):
        f().block_until_ready()


@pytest.mark.parametrize("algorithm", TARGETS)
def test_targets_still_work_after_errors(algorithm: str) -> None:
    """A failed call leaves no state behind: a valid call right after is correct."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 7, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 5)).astype(np.float32)
    spec = ConvSpec((2, 1), ((1, 0), (2, 1)))
    with pytest.raises(jax.errors.JaxRuntimeError):
        call_target(
            algorithm, (2, 6, 7, 3), (3, 2, 3, 5), (2, 3, 8, 5), **spec.ffi_attributes()
        ).block_until_ready()
    call = jax.ffi.ffi_call(
        _targets.target_name(algorithm), jax.ShapeDtypeStruct((2, 3, 9, 5), np.float32)
    )
    y = call(x, w, **spec.ffi_attributes())
    want = lax_conv(x, w, (2, 1), ((1, 0), (2, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert_close(y, want, f"{algorithm} after an error")
