"""Every kind of autodiff through every kernel equals lax: forward mode (jvp, jacfwd,
linearize), reverse mode and higher order (hessian, grad of grad).

jaxcps differentiates the convolution with a custom_jvp whose tangent is XLA's dense
convolution of each operand's tangent, so the derivatives here are lax's up to the rounding
of the kernel's value; the loss is non-linear (sin) so that second derivatives depend on
that value. The geometry is the hard one: stride, asymmetric padding, groups and dilation,
in the kernels' native NHWC layout and in NCHW.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    FFI_ALGORITHMS,
    NATIVE_DN,
    assert_close,
    lax_conv,
    sparse_activation,
    weights,
)

import jaxcps

GEOMETRY = {
    "window_strides": (2, 1),
    "padding": ((1, 2), (0, 1)),
    "rhs_dilation": (1, 2),
    "feature_group_count": 2,
}
NCHW_DN = ("NCHW", "OIHW", "NCHW")
LAYOUTS = {"NHWC": NATIVE_DN, "NCHW": NCHW_DN}
#: Second derivatives go through sin'' of the kernel's value; its rounding (1e-6 relative)
#: is amplified by the sums of the Hessian's products.
SECOND_ORDER_RTOL = 1e-4

Conv = Callable[[jax.Array, jax.Array], jax.Array]


def convs(algorithm: str, layout: str) -> tuple[Conv, Conv]:
    """(jaxcps with `algorithm`, lax) as functions of (x, w) in `layout`."""
    dn = LAYOUTS[layout]
    ours = functools.partial(
        jaxcps.conv_general_dilated, dimension_numbers=dn, algorithm=algorithm, **GEOMETRY
    )
    return ours, functools.partial(lax_conv, dimension_numbers=dn, **GEOMETRY)


@pytest.fixture(params=list(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def operands(rng: np.random.Generator, layout: str) -> tuple[np.ndarray, ...]:
    """x, w and a tangent for each, in `layout` (2 groups of 2 input channels)."""
    x = sparse_activation(rng, (1, 5, 6, 4), 0.5)
    w = weights(rng, (3, 2, 2, 6))
    dx = rng.standard_normal(x.shape).astype(np.float32)
    dw = rng.standard_normal(w.shape).astype(np.float32)
    if layout == "NCHW":
        x, dx = (np.transpose(a, (0, 3, 1, 2)) for a in (x, dx))
        w, dw = (np.transpose(a, (3, 2, 0, 1)) for a in (w, dw))
    return x, w, dx, dw


def sin_loss(conv: Conv) -> Callable[[jax.Array, jax.Array], jax.Array]:
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w)))


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_jvp(algorithm: str, layout: str, operands: tuple[np.ndarray, ...]) -> None:
    x, w, dx, dw = operands
    ours, theirs = convs(algorithm, layout)
    (y, dy), (want_y, want_dy) = (jax.jvp(f, (x, w), (dx, dw)) for f in (ours, theirs))
    assert_close(y, want_y, f"{algorithm} {layout} jvp value")
    assert_close(dy, want_dy, f"{algorithm} {layout} jvp tangent")
    # One operand's tangent only (the other is a symbolic zero).
    got = jax.jvp(lambda x: ours(x, w), (x,), (dx,))[1]
    assert_close(got, jax.jvp(lambda x: theirs(x, w), (x,), (dx,))[1], f"{algorithm} d/dx")
    got = jax.jvp(lambda w: ours(x, w), (w,), (dw,))[1]
    assert_close(got, jax.jvp(lambda w: theirs(x, w), (w,), (dw,))[1], f"{algorithm} d/dw")


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_jacfwd(algorithm: str, layout: str, operands: tuple[np.ndarray, ...]) -> None:
    x, w, _, _ = operands
    ours, theirs = convs(algorithm, layout)
    got = jax.jit(jax.jacfwd(ours, argnums=(0, 1)))(x, w)
    want = jax.jit(jax.jacfwd(theirs, argnums=(0, 1)))(x, w)
    assert_close(got[0], want[0], f"{algorithm} {layout} jacfwd x")
    assert_close(got[1], want[1], f"{algorithm} {layout} jacfwd w")


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_linearize(algorithm: str, layout: str, operands: tuple[np.ndarray, ...]) -> None:
    x, w, dx, dw = operands
    ours, theirs = convs(algorithm, layout)
    y, linear = jax.linearize(ours, x, w)
    want_y, want_linear = jax.linearize(theirs, x, w)
    assert_close(y, want_y, f"{algorithm} {layout} linearize value")
    assert_close(linear(dx, dw), want_linear(dx, dw), f"{algorithm} {layout} linearized")
    assert_close(jax.jit(linear)(dx, dw), want_linear(dx, dw), f"{algorithm} jit(lin)")


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_hessian(algorithm: str, layout: str, operands: tuple[np.ndarray, ...]) -> None:
    x, w, _, _ = operands
    ours, theirs = convs(algorithm, layout)
    # Jitted: one compile is cheaper than eager dispatch of the many small ops. The mixed
    # second derivative (x, w) is test_grad_of_grad's.
    got = jax.jit(jax.hessian(sin_loss(ours)))(x, w)
    want = jax.jit(jax.hessian(sin_loss(theirs)))(x, w)
    assert_close(got, want, f"{algorithm} {layout} hessian", rtol=SECOND_ORDER_RTOL)


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_grad_of_grad(algorithm: str, layout: str, operands: tuple[np.ndarray, ...]) -> None:
    x, w, _, _ = operands

    def outer(conv: Conv) -> Callable[[jax.Array, jax.Array], jax.Array]:
        inner = jax.grad(sin_loss(conv), argnums=0)
        return jax.jit(jax.grad(lambda x, w: jnp.sum(inner(x, w) ** 2), argnums=(0, 1)))

    ours, theirs = convs(algorithm, layout)
    got, want = outer(ours)(x, w), outer(theirs)(x, w)
    assert_close(got[0], want[0], f"{algorithm} {layout} grad-of-grad x", rtol=SECOND_ORDER_RTOL)
    assert_close(got[1], want[1], f"{algorithm} {layout} grad-of-grad w", rtol=SECOND_ORDER_RTOL)


def _lowered(fn: Callable[..., object], *args: object) -> str:
    return jax.jit(fn).lower(*args).as_text()


def test_value_on_the_kernel_tangents_on_xla(rng: np.random.Generator) -> None:
    """jvp: one kernel call for the value; one dense conv per non-zero tangent, none for a
    symbolically zero one; reverse mode keeps the kernel for the value too."""
    x = sparse_activation(rng, (1, 6, 7, 4), 0.5)
    w = weights(rng, (3, 3, 2, 4))
    conv, _ = convs("cpo", "NHWC")

    def count(hlo: str) -> tuple[int, int]:
        return hlo.count("custom_call @jaxcps_cpo_f32"), hlo.count("stablehlo.convolution")

    both = _lowered(lambda x, w, dx, dw: jax.jvp(conv, (x, w), (dx, dw)), x, w, x, w)
    assert count(both) == (1, 2)
    only_x = _lowered(lambda x, dx: jax.jvp(lambda x: conv(x, w), (x,), (dx,)), x, x)
    assert count(only_x) == (1, 1)
    grad_w = _lowered(jax.value_and_grad(lambda w: jnp.sum(conv(x, w))), w)
    assert count(grad_w) == (1, 1)
