"""`jaxcps.conv_general_dilated`: `jax.lax.conv_general_dilated` with a choice of algorithm."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxcps.algorithms import check_algorithm, choose_auto, unsupported_reason
from jaxcps.geometry import ConvSpec, ResolvedConv, crop_negative_padding, resolve_conv
from jaxcps.prepared import prepared_weights
from jaxcps.rules import native_conv


def conv_general_dilated(
    lhs: jax.typing.ArrayLike,
    rhs: jax.typing.ArrayLike,
    window_strides: Any,
    padding: Any,
    lhs_dilation: Any = None,
    rhs_dilation: Any = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    out_sharding: Any = None,
    *,
    algorithm: str = "auto",
    name: str | None = None,
) -> jax.Array:
    """General dilated convolution, computed by the chosen algorithm.

    A drop-in for `jax.lax.conv_general_dilated`: the same arguments, semantics and result,
    plus the keyword-only `algorithm` and `name`; any other keyword is a `TypeError`. Works
    under `jax.jit`, `jax.vmap` and every kind of autodiff (forward, reverse, higher order):
    the value runs on the chosen algorithm, derivatives on XLA's dense convolution.

    Example::

      >>> import jax.numpy as jnp, jaxcps
      >>> x = jnp.maximum(jnp.arange(2 * 8 * 8 * 4.0).reshape(2, 8, 8, 4) % 7 - 4, 0)
      >>> w = jnp.ones((3, 3, 4, 16))
      >>> y = jaxcps.conv_general_dilated(x, w, (1, 1), "SAME",
      ...         dimension_numbers=("NHWC", "HWIO", "NHWC"), algorithm="cpo")
      >>> y.shape
      (2, 8, 8, 16)

    Args:
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
      feature_group_count, batch_group_count, precision, preferred_element_type,
        out_sharding: as in `jax.lax.conv_general_dilated` (`flax.nnx.Conv` passes
        `out_sharding`). The jaxcps kernels compute in float32 whatever `precision` says;
        float16/bfloat16 inputs are converted to float32 and the result back; their result
        is resharded to `out_sharding` when it is given.
      algorithm: one of `jaxcps.ALGORITHMS` (default: "auto").
        "xla" is `lax.conv_general_dilated` itself; "im2col", "mec", "cpo" and "cps" run the
        jaxcps kernel of that name; "auto" runs what the active plan names for this layer,
        and XLA when no plan covers it (and for any configuration a kernel cannot run), with
        negative padding applied by cropping the input (XLA:CPU gets some of it wrong).
      name: the layer's name, looked up in the active plan under "auto" (default: None).

    Returns:
      The convolution, with the shape, layout and dtype that `lax.conv_general_dilated` gives.

    Raises:
      ValueError: for invalid arguments (naming the parameter), for an unknown `algorithm`,
        and for a configuration that the named kernel cannot run (e.g. `lhs_dilation` != 1,
        `batch_group_count` > 1, 1-D/3-D convolutions, float64 or integer inputs).
      TypeError: if lhs and rhs have different dtypes, as lax does, and for a keyword
        argument that is not one of the above.
    """
    check_algorithm(algorithm)
    weights = rhs  # as given: a numpy array is mutable, never prepared (jaxcps.prepared)
    lhs = jnp.asarray(lhs)
    rhs = jnp.asarray(rhs)
    lax_args = {
        "lhs_dilation": lhs_dilation,
        "rhs_dilation": rhs_dilation,
        "dimension_numbers": dimension_numbers,
        "feature_group_count": feature_group_count,
        "batch_group_count": batch_group_count,
        "precision": precision,
        "preferred_element_type": preferred_element_type,
        "out_sharding": out_sharding,
    }
    if algorithm == "xla":
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **lax_args)
    if lhs.dtype != rhs.dtype:
        raise TypeError(
            f"conv_general_dilated requires lhs and rhs to have the same dtype, got "
            f"{lhs.dtype} and {rhs.dtype}"
        )
    conv = resolve_conv(
        lhs.shape,
        rhs.shape,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        batch_group_count,
    )
    if algorithm == "auto":
        algorithm = choose_auto(name)
        check_algorithm(algorithm)
        if algorithm in ("xla", "auto") or unsupported_reason(algorithm, conv, lhs.dtype):
            return _xla_fallback(lhs, rhs, window_strides, padding, conv, lax_args)
    else:
        reason = unsupported_reason(algorithm, conv, lhs.dtype)
        if reason is not None:
            raise ValueError(reason)
    out_dtype = (
        np.dtype(preferred_element_type) if preferred_element_type is not None else lhs.dtype
    )
    prepared = prepared_weights(algorithm, weights, conv.rhs_perm, conv.feature_group_count)
    y = _run_kernel(
        lhs,
        rhs,
        None if prepared is None else prepared.weights,
        algorithm=algorithm,
        layout=None if prepared is None else prepared.layout,
        spec=conv.spec(),
        lhs_perm=conv.lhs_perm,
        rhs_perm=conv.rhs_perm,
        out_perm=conv.out_perm,
        out_dtype=out_dtype,
    )
    return y if out_sharding is None else jax.sharding.reshard(y, out_sharding)


def _xla_fallback(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Any,
    padding: Any,
    conv: ResolvedConv,
    lax_args: dict[str, Any],
) -> jax.Array:
    """XLA's convolution for "auto", with negative padding applied by cropping the input
    first (XLA:CPU computes garbage for some negative paddings; see crop_negative_padding)."""
    negative = any(p < 0 for pair in conv.padding for p in pair)
    if negative and all(d == 1 for d in conv.lhs_dilation):
        index, pads = crop_negative_padding(lhs.shape, conv)
        return lax.conv_general_dilated(lhs[index], rhs, window_strides, pads, **lax_args)
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **lax_args)


@functools.partial(
    jax.jit,
    static_argnames=(
        "algorithm",
        "layout",
        "spec",
        "lhs_perm",
        "rhs_perm",
        "out_perm",
        "out_dtype",
    ),
)
def _run_kernel(
    lhs: jax.Array,
    rhs: jax.Array,
    prepared: jax.Array | None,
    *,
    algorithm: str,
    layout: int | None,
    spec: ConvSpec,
    lhs_perm: tuple[int, ...],
    rhs_perm: tuple[int, ...],
    out_perm: tuple[int, ...],
    out_dtype: np.dtype,
) -> jax.Array:
    """Moves the operands to NHWC/HWIO float32, runs the kernel (with the weights `prepared`
    in its layout `layout`, if given), and moves the result back."""
    x = jnp.transpose(lhs, lhs_perm).astype(jnp.float32)
    w = jnp.transpose(rhs, rhs_perm).astype(jnp.float32)
    y = native_conv(algorithm, spec, layout)(x, w, *(() if prepared is None else (prepared,)))
    return jnp.transpose(y, out_perm).astype(out_dtype)
