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
LAYOUTS = {"NHWC": NATIVE_DN, "NCHW": ("NCHW", "OIHW", "NCHW")}

Conv = Callable[[jax.Array, jax.Array], jax.Array]


def sin_loss(conv: Conv) -> Callable[[jax.Array, jax.Array], jax.Array]:
    return lambda x, w: jnp.sum(jnp.sin(conv(x, w)))


def _linearized(conv: Conv, x, w, dx, dw):
    y, linear = jax.linearize(conv, x, w)
    return y, linear(dx, dw), jax.jit(linear)(dx, dw)


def _grad_of_grad(conv: Conv, x, w, dx, dw):
    inner = jax.grad(sin_loss(conv), argnums=0)
    return jax.grad(lambda x, w: jnp.sum(inner(x, w) ** 2), argnums=(0, 1))(x, w)


#: mode -> (conv, x, w, dx, dw) -> derivatives. The ones with many small ops are jitted:
#: one compile costs less than their eager dispatch.
MODES: dict[str, Callable[..., object]] = {
    "jvp": lambda f, x, w, dx, dw: jax.jvp(f, (x, w), (dx, dw)),
    # One operand's tangent only; the other's is a symbolic zero.
    "jvp-x": lambda f, x, w, dx, dw: jax.jvp(lambda x: f(x, w), (x,), (dx,)),
    "jvp-w": lambda f, x, w, dx, dw: jax.jvp(lambda w: f(x, w), (w,), (dw,)),
    "linearize": _linearized,
    "jacfwd": lambda f, x, w, dx, dw: jax.jit(jax.jacfwd(f, argnums=(0, 1)))(x, w),
    # The mixed second derivative (x, w) is grad-of-grad's.
    "hessian": lambda f, x, w, dx, dw: jax.jit(jax.hessian(sin_loss(f)))(x, w),
    "grad-of-grad": lambda f, x, w, dx, dw: jax.jit(functools.partial(_grad_of_grad, f))(
        x, w, dx, dw
    ),
}
#: Second derivatives go through sin'' of the kernel's value; its rounding (1e-6 relative)
#: is amplified by the sums of the Hessian's products.
RTOL = {"hessian": 1e-4, "grad-of-grad": 1e-4}


@functools.cache
def operands(layout: str) -> tuple[np.ndarray, ...]:
    """x, w and a tangent for each, in `layout` (2 groups of 2 input channels)."""
    rng = np.random.default_rng(sum(map(ord, layout)))
    x = sparse_activation(rng, (1, 5, 6, 4), 0.5)
    w = weights(rng, (3, 2, 2, 6))
    dx = rng.standard_normal(x.shape).astype(np.float32)
    dw = rng.standard_normal(w.shape).astype(np.float32)
    if layout == "NCHW":
        x, dx = (np.transpose(a, (0, 3, 1, 2)) for a in (x, dx))
        w, dw = (np.transpose(a, (3, 2, 0, 1)) for a in (w, dw))
    return x, w, dx, dw


def conv(algorithm: str, layout: str) -> Conv:
    """jaxcps with `algorithm` in `layout`, as a function of (x, w)."""
    return functools.partial(
        jaxcps.conv_general_dilated,
        dimension_numbers=LAYOUTS[layout],
        algorithm=algorithm,
        **GEOMETRY,
    )


@functools.cache
def lax_derivatives(mode: str, layout: str) -> object:
    """The oracle, once per mode and layout: the same derivatives of lax's convolution."""
    lax = functools.partial(lax_conv, dimension_numbers=LAYOUTS[layout], **GEOMETRY)
    return MODES[mode](lax, *operands(layout))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
@pytest.mark.parametrize("mode", list(MODES))
def test_derivatives_match_lax(mode: str, algorithm: str, layout: str) -> None:
    got = MODES[mode](conv(algorithm, layout), *operands(layout))
    want = lax_derivatives(mode, layout)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, g), w in zip(jax.tree.leaves_with_path(got), jax.tree.leaves(want)):
        context = f"{mode}{jax.tree_util.keystr(path)}, {algorithm}, {layout}"
        assert_close(g, w, context, rtol=RTOL.get(mode, 1e-5))


def _lowered(fn: Callable[..., object], *args: object) -> str:
    return jax.jit(fn).lower(*args).as_text()


def test_value_on_the_kernel_tangents_on_xla(rng: np.random.Generator) -> None:
    """jvp: one kernel call for the value; one dense conv per non-zero tangent, none for a
    symbolically zero one; reverse mode keeps the kernel for the value too."""
    x = sparse_activation(rng, (1, 6, 7, 4), 0.5)
    w = weights(rng, (3, 3, 2, 4))
    cpo = conv("cpo", "NHWC")

    def count(hlo: str) -> tuple[int, int]:
        return hlo.count("custom_call @jaxcps_cpo_f32"), hlo.count("stablehlo.convolution")

    both = _lowered(lambda x, w, dx, dw: jax.jvp(cpo, (x, w), (dx, dw)), x, w, x, w)
    assert count(both) == (1, 2)
    only_x = _lowered(lambda x, dx: jax.jvp(lambda x: cpo(x, w), (x,), (dx,)), x, x)
    assert count(only_x) == (1, 1)
    grad_w = _lowered(jax.value_and_grad(lambda w: jnp.sum(cpo(x, w))), w)
    assert count(grad_w) == (1, 1)
