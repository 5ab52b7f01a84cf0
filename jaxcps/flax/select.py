"""`select(fn, *args)`: the paper's offline per-layer selection on real activations.

Two steps: `fn(*args)` runs once, eagerly, with every Flax conv swapped for a recorder that
keeps the first input activation, weights and arguments of each layer (by module path) and
then computes with XLA; each recorded layer is then timed alone with every candidate
(`jaxcps.measure`), and the fastest wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxcps.conv import conv_general_dilated
from jaxcps.flax._hooks import swap_convs
from jaxcps.measure import (
    DEFAULT_CANDIDATES,
    CapturedConv,
    check_selection,
    measure_layers,
)
from jaxcps.plan import Plan


def _recorder(store: dict[str, CapturedConv], path: str) -> Callable[..., jax.Array]:
    def record(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=None,
        rhs_dilation=None,
        dimension_numbers=None,
        feature_group_count=1,
        batch_group_count=1,
        precision=None,
        preferred_element_type=None,
        out_sharding=None,
    ):
        options = {
            "lhs_dilation": lhs_dilation,
            "rhs_dilation": rhs_dilation,
            "dimension_numbers": dimension_numbers,
            "feature_group_count": feature_group_count,
            "batch_group_count": batch_group_count,
            "precision": precision,
            "preferred_element_type": preferred_element_type,
        }
        if path not in store:
            try:
                operands = np.asarray(lhs), np.asarray(rhs)
            except jax.errors.TracerArrayConversionError:
                raise ValueError(
                    f"select needs concrete activations, but layer {path!r} was traced: pass "
                    f"fn without jax.jit/nnx.jit (selection jits each layer itself)"
                ) from None
            store[path] = CapturedConv(path, *operands, window_strides, padding, options)
        return conv_general_dilated(
            lhs, rhs, window_strides, padding, **options, out_sharding=out_sharding, algorithm="xla"
        )

    return record


def capture(
    fn: Callable[..., Any], *args: Any, models: Sequence[nnx.Module] = ()
) -> list[CapturedConv]:
    """Runs `fn(*args)` once and returns every conv layer's first call, in execution order.

    Linen convs are found by interception; NNX convs inside `fn` (if it is an NNX module),
    inside `args`, and inside `models`.
    """
    nnx_models = [m for m in (fn, *args, *models) if isinstance(m, nnx.Module)]
    store: dict[str, CapturedConv] = {}
    with swap_convs(lambda path, module: _recorder(store, path), nnx_models):
        jax.block_until_ready(fn(*args))
    return list(store.values())


def select(
    fn: Callable[..., Any],
    *args: Any,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    repeats: int = 7,
    warmup: int = 2,
    models: Sequence[nnx.Module] = (),
    progress: bool = True,
    prepared_weights: bool = False,
) -> Plan:
    """Measures the fastest algorithm for every conv layer of a Flax model: a `jaxcps.Plan`.

    `fn(*args)` runs once, eagerly, to capture each conv layer's real input activation,
    weights and arguments. Each layer is then timed alone with every candidate (jitted,
    `warmup` untimed rounds, `repeats` interleaved rounds, median), and the fastest is
    chosen. Candidates that cannot run a layer are recorded with time None. A layer called
    several times (shared weights) is measured on its first call.

    Example usage::

      >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxcps.flax
      >>> model = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Conv(8, (3, 3))])
      >>> x = jax.random.normal(jax.random.key(0), (1, 16, 16, 3))
      >>> variables = model.init(jax.random.key(1), x)
      >>> plan = jaxcps.flax.select(lambda x: model.apply(variables, x), x,
      ...                           candidates=("xla", "cpo"), repeats=3, progress=False)
      >>> sorted(plan)
      ['layers_0', 'layers_2']
      >>> with jaxcps.flax.route(plan):
      ...   y = jax.jit(model.apply)(variables, x)

    Args:
      fn: runs a Flax model: `lambda x: model.apply(variables, x)` for linen, an NNX module,
        or any function calling one. Must not be jitted (activations must be concrete).
      *args: the sample inputs passed to `fn`.
      candidates: algorithms to time, from "xla", "im2col", "mec", "cpo", "cps" (default:
        all five).
      repeats: timed rounds per layer; the median is kept (default: 7).
      warmup: untimed rounds per layer before timing (default: 2).
      models: NNX modules that `fn` uses but that are neither `fn` nor in `args`
        (default: ()).
      progress: draw a progress bar on stderr (default: True).
      prepared_weights: time the layers with their weights closed over, as they run in a
        program that closes over them (`jax.jit(functools.partial(model.apply, variables))`):
        kernels that take prepared weights (sparse_direct, CPO) pack them once, not per
        call. Default False: the weights as jit arguments, as `jax.jit(model.apply)` runs.

    Returns:
      A `jaxcps.Plan` with one record per conv layer, in execution order.

    Raises:
      ValueError: for an unknown or "auto" candidate, `repeats` < 1, no conv layer found,
        or a jitted `fn`.
    """
    check_selection(candidates, repeats)
    layers = capture(fn, *args, models=models)
    if not layers:
        raise ValueError(
            "no Flax conv layer ran in fn(*args); for NNX, pass the model as fn, in args, "
            "or with models="
        )
    return measure_layers(
        layers,
        candidates=candidates,
        repeats=repeats,
        warmup=warmup,
        progress=progress,
        prepared_weights=prepared_weights,
    )
