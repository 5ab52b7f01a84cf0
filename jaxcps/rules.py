"""How a jaxcps convolution behaves under JAX's transformations.

`native_conv(algorithm, spec)` returns the function x (NHWC, float32), w (HWIO, float32) ->
y (NHWC) that runs one FFI kernel, with
- a `custom_vmap` rule: a mapped axis of x folds into the batch when w is not mapped (one
  kernel call); mapped weights fall back to one call per element (`lax.map`);
- a `custom_jvp`: the value on the kernel, the tangent through XLA's dense convolution
  (`lax.conv_general_dilated`). Convolution is bilinear, so the tangent is
  conv(dx, w) + conv(x, dw), linear in (dx, dw): JAX transposes it for reverse mode and
  differentiates it again for higher orders, which gives every derivative exactly as lax
  does. A symbolically zero tangent (an operand not being differentiated) costs no conv;
- a `custom_partitioning` rule for `jax.jit` over sharded inputs: XLA would otherwise gather
  every operand of an opaque custom call onto each device. The rule keeps the batch axis
  sharded (each device convolves its own images with the whole weights) and replicates every
  other axis, so a batch-sharded input runs one kernel per shard with no collective;
- inside a user's `jax.shard_map`, the FFI call's result type comes from `jax.typeof(x)` (it
  keeps the varying manual axes), and x and w are cast to the same varying axes before the
  custom_jvp, so that the value and its tangent have one type; the transpose of that cast
  sums the per-shard weight gradients, once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from jaxcps._compat import varying_axes
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


# Factors of the sharding rule: x (N,H,W,C), w (KH,KW,I,O) -> y (N,OH,OW,O). Only the batch
# factor n may stay sharded.
_SHARDING_RULE = "n h w c, kh kw i o -> n oh ow o"
_REPLICATED_FACTORS = ("h", "w", "c", "kh", "kw", "i", "o", "oh", "ow")


def _batch_partitioned(algorithm: str, spec: ConvSpec) -> ConvFn:
    """The FFI call, run by XLA's SPMD partitioner once per batch shard."""

    run = functools.partial(_ffi_call, algorithm, spec)
    call = custom_partitioning(run)

    def partition(mesh, arg_shapes, result_shape):
        del result_shape
        x_sharding = arg_shapes[0].sharding
        if not isinstance(x_sharding, NamedSharding):
            raise NotImplementedError(
                f"jaxcps partitions inputs with a NamedSharding, got {x_sharding}"
            )
        # The sharding rule already asks for this; stating it again keeps the per-shard call
        # correct under a partitioner that ignores the rule.
        batch_axes = x_sharding.spec[0] if len(x_sharding.spec) else None
        batch_sharded = NamedSharding(x_sharding.mesh, PartitionSpec(batch_axes))
        replicated = NamedSharding(x_sharding.mesh, PartitionSpec())
        return mesh, run, batch_sharded, (batch_sharded, replicated)

    call.def_partition(
        partition,
        sharding_rule=_SHARDING_RULE,
        need_replication_factors=_REPLICATED_FACTORS,
    )
    return call


def _same_varying_axes(x: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Casts x and w to the union of their varying manual axes (no-op outside shard_map)."""
    x_axes = varying_axes(x)
    w_axes = varying_axes(w)
    axes = x_axes | w_axes
    if x_axes != axes:
        x = lax.pcast(x, tuple(sorted(axes - x_axes)), to="varying")
    if w_axes != axes:
        w = lax.pcast(w, tuple(sorted(axes - w_axes)), to="varying")
    return x, w


@functools.cache
def native_conv(algorithm: str, spec: ConvSpec) -> ConvFn:
    """The differentiable, batchable, partitionable kernel call for one algorithm and
    convolution."""
    partitioned = _batch_partitioned(algorithm, spec)

    @jax.custom_batching.custom_vmap
    def batched(x, w):
        return partitioned(x, w)

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

    @jax.custom_jvp
    def conv(x, w):
        return batched(x, w)

    @functools.partial(conv.defjvp, symbolic_zeros=True)
    def _jvp(primals, tangents):
        x, w = primals
        dx, dw = tangents
        terms = []
        if not isinstance(dx, SymbolicZero):
            terms.append(lax_conv(spec, dx, w))
        if not isinstance(dw, SymbolicZero):
            terms.append(lax_conv(spec, x, dw))
        # The value through `conv` itself, so that differentiating this rule (higher
        # order) comes back here instead of reaching the kernel call, which has no rule.
        return conv(x, w), functools.reduce(jnp.add, terms)

    def native(x, w):
        return conv(*_same_varying_axes(x, w))

    return native
