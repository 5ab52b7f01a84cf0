"""How a jaxcps convolution behaves under JAX's transformations.

`native_conv(algorithm, spec)` returns the function x (NHWC, float32), w (HWIO, float32) ->
y (NHWC) that runs one FFI kernel, with
- a `custom_vmap` rule: a mapped axis of x folds into the batch when w is not mapped (one
  kernel call); mapped weights fall back to one call per element (`lax.map`);
- a `custom_vjp`: the forward pass on the kernel, the backward pass through XLA's dense
  convolution (`lax.conv_general_dilated`), which gives exactly lax's gradients.
The FFI call's result type is built from `jax.typeof(x)`, so it keeps shard_map's
varying-axis information.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxcps._targets import target_name
from jaxcps.geometry import ConvSpec

NATIVE_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

ConvFn = Callable[[jax.Array, jax.Array], jax.Array]


def lax_conv(spec: ConvSpec, x: jax.Array, w: jax.Array) -> jax.Array:
    """XLA's convolution of NHWC x and HWIO w under `spec`."""
    return lax.conv_general_dilated(
        x,
        w,
        spec.window_strides,
        spec.padding,
        rhs_dilation=spec.rhs_dilation,
        dimension_numbers=NATIVE_DIMENSION_NUMBERS,
        feature_group_count=spec.feature_group_count,
    )


def _ffi_call(algorithm: str, spec: ConvSpec, x: jax.Array, w: jax.Array) -> jax.Array:
    out_shape = spec.output_shape(x.shape, w.shape)
    result = jax.typeof(x).update(shape=out_shape, dtype=jnp.float32)
    return jax.ffi.ffi_call(target_name(algorithm), result)(x, w, **spec.ffi_attributes())


@functools.cache
def native_conv(algorithm: str, spec: ConvSpec) -> ConvFn:
    """The differentiable, batchable kernel call for one algorithm and convolution."""

    @jax.custom_batching.custom_vmap
    def batched(x, w):
        return _ffi_call(algorithm, spec, x, w)

    @batched.def_vmap
    def _batch_rule(axis_size, in_batched, x, w):
        x_batched, w_batched = in_batched
        if not w_batched:
            if not x_batched:
                return batched(x, w), False
            b, n = x.shape[:2]
            y = batched(x.reshape((b * n, *x.shape[2:])), w)
            return y.reshape((b, n, *y.shape[1:])), True
        if not x_batched:
            x = jnp.broadcast_to(x, (axis_size, *x.shape))
        return lax.map(lambda xw: batched(*xw), (x, w)), True

    @jax.custom_vjp
    def conv(x, w):
        return batched(x, w)

    def conv_fwd(x, w):
        return batched(x, w), (x, w)

    def conv_bwd(residuals, g):
        x, w = residuals
        _, vjp = jax.vjp(functools.partial(lax_conv, spec), x, w)
        return vjp(g)

    conv.defvjp(conv_fwd, conv_bwd)
    return conv
