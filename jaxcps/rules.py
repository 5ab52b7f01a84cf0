"""How a jaxcps convolution behaves under JAX's transformations.

`native_conv(algorithm, spec, layout)` returns the function x (NHWC, float32), w (HWIO,
float32)[, prepared] -> y (NHWC) that runs one FFI kernel, with the weights also prepared in
the kernel's own layout when `layout` is given (`jaxcps.prepared`; derivatives flow through
w, of which the prepared weights are a copy), and
- a `custom_vmap` rule: a mapped axis of x folds into the batch when w is not mapped (one
  kernel call); mapped weights fall back to one call per element (`lax.map`), without
  prepared weights;
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
  keeps the varying manual axes), and x, w (and the prepared weights) are cast to the same
  varying axes before the custom_jvp, so that the value and its tangent have one type; the
  transpose of that cast sums the per-shard weight gradients, once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from jaxcps._compat import varying_axes
from jaxcps._targets import PREPARED_TARGET, target_name
from jaxcps.geometry import ConvSpec

NATIVE_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

ConvFn = Callable[..., jax.Array]


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


def _ffi_call(
    algorithm: str, spec: ConvSpec, layout: int | None, x: jax.Array, w: jax.Array, *prepared
) -> jax.Array:
    out_shape = spec.output_shape(x.shape, w.shape)
    result = jax.typeof(x).update(shape=out_shape, dtype=jnp.float32)
    if layout is None:
        return jax.ffi.ffi_call(target_name(algorithm), result)(x, w, **spec.ffi_attributes())
    return jax.ffi.ffi_call(PREPARED_TARGET, result)(
        x, w, *prepared, algorithm=algorithm, layout=np.int64(layout), **spec.ffi_attributes()
    )


# Factors of the sharding rule: x (N,H,W,C), w (KH,KW,I,O)[, prepared (P)] -> y (N,OH,OW,O).
# Only the batch factor n may stay sharded.
_SHARDING_RULE = "n h w c, kh kw i o -> n oh ow o"
_PREPARED_SHARDING_RULE = "n h w c, kh kw i o, p -> n oh ow o"


def _replicated_factors(rule: str) -> tuple[str, ...]:
    """Every factor of `rule` but n, in the order they first appear (Shardy wants it)."""
    names = rule.replace(",", " ").replace("->", " ").split()
    return tuple(f for f in dict.fromkeys(names) if f != "n")


def _batch_partitioned(algorithm: str, spec: ConvSpec, layout: int | None) -> ConvFn:
    """The FFI call, run by XLA's SPMD partitioner once per batch shard."""

    run = functools.partial(_ffi_call, algorithm, spec, layout)
    call = custom_partitioning(run)
    prepared = layout is not None

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
        operands = (
            (batch_sharded, replicated, replicated) if prepared else (batch_sharded, replicated)
        )
        return mesh, run, batch_sharded, operands

    rule = _PREPARED_SHARDING_RULE if prepared else _SHARDING_RULE
    call.def_partition(
        partition, sharding_rule=rule, need_replication_factors=_replicated_factors(rule)
    )
    return call


def _same_varying_axes(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Casts the arrays to the union of their varying manual axes (no-op outside shard_map)."""
    each = [varying_axes(a) for a in arrays]
    axes = frozenset().union(*each)
    return tuple(
        a if a_axes == axes else lax.pcast(a, tuple(sorted(axes - a_axes)), to="varying")
        for a, a_axes in zip(arrays, each)
    )


@functools.cache
def native_conv(algorithm: str, spec: ConvSpec, layout: int | None = None) -> ConvFn:
    """The differentiable, batchable, partitionable kernel call for one algorithm and
    convolution; with prepared weights as a third operand when `layout` is given."""
    partitioned = _batch_partitioned(algorithm, spec, layout)

    @jax.custom_batching.custom_vmap
    def batched(x, w, *prepared):
        return partitioned(x, w, *prepared)

    @batched.def_vmap
    def _batch_rule(axis_size, in_batched, x, w, *prepared):
        # Prepared weights come from concrete weights, so they are mapped only if w is.
        x_batched, w_batched, *_ = in_batched
        if not w_batched:
            if not x_batched:
                return batched(x, w, *prepared), False
            b, n = x.shape[:2]
            y = batched(x.reshape((b * n, *x.shape[2:])), w, *prepared)
            return y.reshape((b, n, *y.shape[1:])), True
        # Mapped weights: one call per element, each packing its own weights.
        unprepared = native_conv(algorithm, spec)
        if not x_batched:
            x = jnp.broadcast_to(x, (axis_size, *x.shape))
        if not w_batched:
            w = jnp.broadcast_to(w, (axis_size, *w.shape))
        return lax.map(lambda xw: unprepared(*xw), (x, w)), True

    @jax.custom_jvp
    def conv(x, w, *prepared):
        return batched(x, w, *prepared)

    @functools.partial(conv.defjvp, symbolic_zeros=True)
    def _jvp(primals, tangents):
        x, w, *prepared = primals
        dx, dw, *_ = tangents  # prepared weights are a copy of w: w carries their tangent
        terms = []
        if not isinstance(dx, SymbolicZero):
            terms.append(lax_conv(spec, dx, w))
        if not isinstance(dw, SymbolicZero):
            terms.append(lax_conv(spec, x, dw))
        # The value through `conv` itself, so that differentiating this rule (higher
        # order) comes back here instead of reaching the kernel call, which has no rule.
        y = conv(x, w, *prepared)
        if not terms:  # only the prepared weights have a tangent
            return y, jnp.zeros_like(y)
        return y, functools.reduce(jnp.add, terms)

    def native(x, w, *prepared):
        return conv(*_same_varying_axes(x, w, *prepared))

    return native
