"""The FFI targets called directly, beside the public function: a refused call raises under
jit too and leaves no state behind, and MEC runs what its lowering might suggest it cannot.

The table of bad direct calls (each must be a clean `JaxRuntimeError` naming the parameter,
never a crash) is `DIRECT_PROBES` in test_robustness.py, run in a subprocess.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest
from conftest import NATIVE_DN, TARGETS, assert_close, lax_conv

import jaxcps
from jaxcps import _targets
from jaxcps.geometry import ConvSpec, resolve_conv


def call_target(
    algorithm: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    **overrides: Any,
) -> jax.Array:
    """Calls the target of `algorithm` on ones, with the attributes of a stride-1 unpadded
    convolution, replaced by `overrides`."""
    attrs = ConvSpec((1, 1), ((0, 0), (0, 0))).ffi_attributes()
    attrs.update(overrides)
    call = jax.ffi.ffi_call(
        _targets.target_name(algorithm), jax.ShapeDtypeStruct(out_shape, np.float32)
    )
    return call(np.ones(x_shape, np.float32), np.ones(w_shape, np.float32), **attrs)


def test_mec_runs_height_dilation() -> None:
    """MEC lowers along the width only, yet runs a height dilation (called directly, and
    through the public function)."""
    spec = ConvSpec((1, 1), ((0, 0), (0, 0)), rhs_dilation=(2, 1))
    conv = resolve_conv(
        (1, 9, 4, 2),
        (2, 1, 2, 3),
        (1, 1),
        "VALID",
        rhs_dilation=(2, 1),
        dimension_numbers=NATIVE_DN,
    )
    assert conv.spec() == spec
    x = np.random.default_rng(6).standard_normal((1, 9, 4, 2)).astype(np.float32)
    w = np.random.default_rng(7).standard_normal((2, 1, 2, 3)).astype(np.float32)
    want = lax_conv(x, w, (1, 1), "VALID", rhs_dilation=(2, 1), dimension_numbers=NATIVE_DN)
    call = jax.ffi.ffi_call(
        _targets.target_name("mec"), jax.ShapeDtypeStruct((1, 7, 4, 3), np.float32)
    )
    assert_close(call(x, w, **spec.ffi_attributes()), want, "mec target, height dilation 2")
    got = jaxcps.conv_general_dilated(
        x, w, (1, 1), "VALID", rhs_dilation=(2, 1), dimension_numbers=NATIVE_DN, algorithm="mec"
    )
    assert_close(got, want, "mec, height dilation 2")


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
    want = lax_conv(x, w, (2, 1), ((1, 0), (2, 1)), dimension_numbers=NATIVE_DN)
    assert_close(y, want, f"{algorithm} after an error")
