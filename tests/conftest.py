"""Shared helpers for the jaxcps tests: sparse activations, the oracles, the tolerance check.

Oracles: `lax.conv_general_dilated` with `precision=HIGHEST` (`lax_conv`) and the naive C++
direct convolution, the FFI target "reference" (`reference_conv`).

Tolerance (`assert_close`): max |actual - expected| <= rtol * max(max |expected|, floor),
rtol = 1e-5 for float32 by default. Every kernel accumulates KH*KW*Ci float32 products (at
most about a thousand here), whose rounding error stays well below 1e-5 of the largest output;
the floor makes an all-zero expected output demand an absolute error below rtol * floor.

CI sets JAXCPS_REQUIRE_ALL_TESTS=1: `skip_unless_allowed` then fails instead of skipping.
"""

from __future__ import annotations

import collections
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxcps import _targets
from jaxcps.algorithms import COMPRESSING_ALGORITHMS, FFI_ALGORITHMS, KERNELS, SPARSE_ALGORITHMS
from jaxcps.geometry import ConvSpec, crop_negative_padding, resolve_conv

#: Every C++ kernel, the test oracle "reference" included, in the compiled module's order.
TARGETS: tuple[str, ...] = tuple(KERNELS)
#: The kernels that skip zeros (CPO, CPS, sparse_direct): tile kernels and builders per ISA.
SPARSE: tuple[str, ...] = SPARSE_ALGORITHMS
#: The kernels that build a compressed form of the activation (CPO, CPS).
COMPRESSING: tuple[str, ...] = COMPRESSING_ALGORITHMS
#: The kernels that multiply with BLAS (im2col, MEC): 32-bit BLAS sizes.
BLAS: tuple[str, ...] = tuple(a for a in FFI_ALGORITHMS if KERNELS[a].uses_blas)
#: Instruction sets of the sparse (CPO/CPS/sparse_direct) tile kernels compiled for this architecture,
#: portable first: scalar, avx2, avx512 on x86-64; neon on AArch64.
ISAS: tuple[str, ...] = tuple(_targets._ffi.compiled_isas())
NATIVE_DN = ("NHWC", "HWIO", "NHWC")
REQUIRE_ALL_TESTS = os.environ.get("JAXCPS_REQUIRE_ALL_TESTS", "") not in ("", "0")


def skip_unless_allowed(reason: str) -> None:
    """Skips the test, or fails it when CI asks that nothing be skipped."""
    if REQUIRE_ALL_TESTS:
        pytest.fail(f"JAXCPS_REQUIRE_ALL_TESTS is set, refusing to skip: {reason}")
    pytest.skip(reason)


def sparse_activation(
    rng: np.random.Generator,
    shape: Sequence[int],
    zero_fraction: float,
    *,
    dead_channels: int = 0,
    channel_axis: int = -1,
    clustered: bool = False,
) -> np.ndarray:
    """A float32 ReLU-like activation (non-zeros in [0.1, 2)) with exact zeros.

    Exactly `round(zero_fraction * size)` entries are zero, or more if the `dead_channels`
    all-zero channels (the first ones along `channel_axis`) already hold more. The other zeros
    are placed uniformly at random, or, with `clustered`, as one contiguous stretch of the
    channel-major raster order (channel by channel, each map row by row) from a random start,
    which leaves long horizontal runs of non-zeros, the case CPS compresses.
    """
    shape = tuple(shape)
    x = rng.uniform(0.1, 2.0, size=shape).astype(np.float32)
    size = x.size
    if size == 0:
        return x
    dead = np.zeros(shape, bool)
    if dead_channels:
        index = [slice(None)] * len(shape)
        index[channel_axis] = slice(0, dead_channels)
        dead[tuple(index)] = True
    target = max(round(zero_fraction * size), int(dead.sum()))
    live = np.flatnonzero(~dead.ravel())
    extra = target - (size - live.size)
    if clustered:
        # Zero `extra` consecutive live entries of the channel-major raster order, cyclically
        # from a random start.
        moved = np.moveaxis(np.arange(size).reshape(shape), channel_axis, 0).ravel()
        order = moved[~dead.ravel()[moved]]
        order = np.roll(order, -int(rng.integers(max(order.size, 1))))
        chosen = order[:extra]
    else:
        chosen = rng.choice(live, size=extra, replace=False)
    flat = x.ravel()
    flat[dead.ravel()] = 0.0
    flat[chosen] = 0.0
    return flat.reshape(shape)


def weights(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Standard-normal float32 weights."""
    return rng.standard_normal(tuple(shape)).astype(np.float32)


def lax_conv(lhs: Any, rhs: Any, window_strides: Any, padding: Any, **kwargs: Any) -> jax.Array:
    """The oracle: `lax.conv_general_dilated` at HIGHEST precision.

    Negative explicit padding is applied by slicing the input first (the same convolution):
    XLA:CPU reads out of bounds for float32 convolutions with negative low padding
    (openxla/xla#48713, jax 0.10.2), so lax itself is no oracle for them. The slicing is
    `jaxcps.geometry.crop_negative_padding`, which "auto" uses too; the parity tests also
    compare every kernel with the C++ reference, which does not depend on it.
    """
    if not isinstance(padding, str) and kwargs.get("lhs_dilation") is None:
        conv = resolve_conv(
            np.shape(lhs),
            np.shape(rhs),
            window_strides,
            padding,
            rhs_dilation=kwargs.get("rhs_dilation"),
            dimension_numbers=kwargs.get("dimension_numbers"),
            feature_group_count=kwargs.get("feature_group_count", 1),
            batch_group_count=kwargs.get("batch_group_count", 1),
        )
        index, padding = crop_negative_padding(np.shape(lhs), conv)
        lhs = jnp.asarray(lhs)[index]
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, precision=lax.Precision.HIGHEST, **kwargs
    )


def ffi_conv(
    algorithm: str, x: Any, w: Any, spec: ConvSpec, out_shape: Sequence[int] | None = None
) -> jax.Array:
    """Calls the FFI target of `algorithm` directly on NHWC x and HWIO w (float32)."""
    x = np.asarray(x, np.float32)
    w = np.asarray(w, np.float32)
    if out_shape is None:
        out_shape = spec.output_shape(x.shape, w.shape)
    call = jax.ffi.ffi_call(
        _targets.target_name(algorithm), jax.ShapeDtypeStruct(tuple(out_shape), np.float32)
    )
    return call(x, w, **spec.ffi_attributes())


def reference_conv(x: Any, w: Any, spec: ConvSpec) -> jax.Array:
    """The second oracle: the C++ naive direct convolution (double accumulation)."""
    return ffi_conv("reference", x, w, spec)


def assert_close(
    actual: Any,
    expected: Any,
    context: str,
    *,
    rtol: float = 1e-5,
    floor: float = 1.0,
) -> None:
    """Asserts max |actual - expected| <= rtol * max(max |expected|, floor), same shapes.

    On failure the message holds `context` (shapes and configuration), the worst index and
    both values there.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (
        f"shape {actual.shape} != expected {expected.shape}; {context}"
    )
    if expected.size == 0:
        return
    assert np.all(np.isfinite(actual)), f"non-finite output; {context}"
    err = np.abs(actual - expected)
    scale = max(float(np.max(np.abs(expected))), floor)
    worst = np.unravel_index(int(np.argmax(err)), err.shape)
    bound = rtol * scale
    assert err[worst] <= bound, (
        f"max abs error {err[worst]:.3g} > {bound:.3g} (rtol {rtol} x scale {scale:.3g}) at "
        f"index {tuple(int(i) for i in worst)}: got {actual[worst]!r}, expected "
        f"{expected[worst]!r}; {context}"
    )


def compiled(fn: Callable[..., Any], *args: Any) -> jax.stages.Compiled:
    """`fn` jitted and compiled for `args` (call it with the same arguments)."""
    return jax.jit(fn).lower(*args).compile()


def kernel_calls(program: jax.stages.Compiled) -> collections.Counter[str]:
    """Algorithm -> number of jaxcps custom calls in a compiled program.

    The compiled program, not the lowered one: lowering emits one function per distinct
    jitted kernel call and calls it from every site, compiling inlines them. A call with
    prepared weights counts for the algorithm it names.
    """
    counts: collections.Counter[str] = collections.Counter()
    for line in program.as_text().splitlines():
        target = re.search(r'custom_call_target="jaxcps_(\w+)_f32"', line)
        if target is None:
            continue
        prepared = re.search(r'algorithm = "(\w+)"', line)
        counts[prepared.group(1) if target.group(1) == "prepared" else target.group(1)] += 1
    return counts


def prepared_calls(program: jax.stages.Compiled) -> int:
    """The number of jaxcps custom calls with prepared weights in a compiled program."""
    return program.as_text().count(f'custom_call_target="{_targets.PREPARED_TARGET}"')


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id, so each test is reproducible on its own."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def restore_isa() -> Iterator[None]:
    """Restores the sparse kernels' instruction set after a test that changes it."""
    original = _targets._ffi.active_isa()
    try:
        yield
    finally:
        _targets._ffi.set_isa(original)


def use_isa(isa: str) -> None:
    """Switches the sparse kernels to `isa`, skipping if this CPU lacks it.

    The skip stays a skip under JAXCPS_REQUIRE_ALL_TESTS: which ISAs exist is a property of
    the hardware, not a missing feature.
    """
    if isa not in _targets._ffi.supported_isas():
        pytest.skip(f"this CPU does not support {isa}")  # hardware-dependent, allowed in CI
    _targets._ffi.set_isa(isa)
    assert _targets._ffi.active_isa() == isa
