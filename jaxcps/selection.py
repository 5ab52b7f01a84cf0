"""`jaxcps.select(fn, *args)`: the paper's per-layer selection for any JAX program.

Two steps: `fn` is traced and run once (jitted) with every convolution that has a key
(`jaxcps.rewrite`) computed by XLA behind a callback that keeps its first operands; each
recorded layer is then timed alone with every candidate (`jaxcps.measure`), and the fastest
wins. The plan's keys are the ones `jaxcps.routed` looks up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax import lax
from jax.extend import core as jcore

from jaxcps.measure import (
    DEFAULT_CANDIDATES,
    CapturedConv,
    check_selection,
    measure_layers,
)
from jaxcps.plan import Plan
from jaxcps.program import Call
from jaxcps.rewrite import ConvFn, ConvSite, conv_sites, replace_convs


def _keep_first(store: dict[str, CapturedConv], site: ConvSite, lhs: Any, rhs: Any) -> None:
    if site.key in store:
        return
    params = dict(site.params)
    # Measured standalone, on one device.
    params.pop("out_sharding", None)
    window_strides, padding = params.pop("window_strides"), params.pop("padding")
    store[site.key] = CapturedConv(
        site.key, np.asarray(lhs), np.asarray(rhs), window_strides, padding, params
    )


def _recorder(store: dict[str, CapturedConv]) -> Callable[[ConvSite], ConvFn]:
    def replace(site: ConvSite) -> ConvFn:
        def record(lhs: jax.Array, rhs: jax.Array) -> jax.Array:
            jax.debug.callback(functools.partial(_keep_first, store, site), lhs, rhs)
            return lax.conv_general_dilated(lhs, rhs, **site.params)

        return record

    return replace


def capture(fn: Callable[..., Any], *args: Any) -> list[CapturedConv]:
    """Runs `fn(*args)` once; every keyed convolution's first operands, in program order.

    A convolution that does not run (in a cond branch not taken, a loop of zero trips) is
    not in the list; one that runs several times (in a scan or while_loop body) is
    recorded at its first execution.
    """
    call = Call.of(args, {})
    program, _ = call.trace(fn)
    store: dict[str, CapturedConv] = {}
    recording = replace_convs(program, _recorder(store))
    jax.block_until_ready(jax.jit(jcore.jaxpr_as_fun(recording))(*call.traced))
    return [store[site.key] for site in conv_sites(program) if site.key in store]


def select(
    fn: Callable[..., Any],
    *args: Any,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    repeats: int = 7,
    warmup: int = 2,
    progress: bool = True,
    prepared_weights: bool = False,
) -> Plan:
    """Measures the fastest algorithm for every convolution of a JAX program: a `jaxcps.Plan`.

    `fn(*args)` runs once to capture each convolution's real input activation and weights.
    Each is then timed alone with every candidate (jitted, `warmup` untimed rounds,
    `repeats` interleaved rounds, median), and the fastest is chosen. Candidates that cannot
    run a layer are recorded with time None. Layers are keyed as `jaxcps.routed` keys them
    (name-stack paths such as "resnet50/conv2_block1_2_conv", see `jaxcps.rewrite`), so the
    plan is a policy for `routed`. A convolution inside a loop (scan, while_loop, fori_loop)
    is measured on the operands of its first execution; one that does not run (a cond
    branch not taken) is not in the plan, and `routed` leaves it on XLA.

    Example usage::

      >>> import jax, jax.numpy as jnp, jaxcps
      >>> def net(x, w1, w2):
      ...   with jax.named_scope("stem"):
      ...     x = jax.nn.relu(jax.lax.conv(x, w1, (1, 1), "SAME"))
      ...   with jax.named_scope("head"):
      ...     return jax.lax.conv(x, w2, (1, 1), "SAME")
      >>> x = jax.random.normal(jax.random.key(0), (1, 4, 16, 16))
      >>> w = jax.random.normal(jax.random.key(1), (4, 4, 3, 3))
      >>> plan = jaxcps.select(net, x, w, w, candidates=("xla", "cpo"), repeats=3,
      ...                      progress=False)
      >>> list(plan)
      ['stem', 'head']
      >>> y = jax.jit(jaxcps.routed(net, plan))(x, w, w)

    Args:
      fn: any JAX callable (jitted or not), taking arguments as `jaxcps.routed` does.
      *args: the sample inputs passed to `fn`; their values matter (zeros are measured).
      candidates: algorithms to time, from "xla", "im2col", "mec", "cpo", "cps" (default:
        all five).
      repeats: timed rounds per layer; the median is kept (default: 7).
      warmup: untimed rounds per layer before timing (default: 2).
      progress: draw a progress bar on stderr (default: True).
      prepared_weights: time the layers with their weights closed over, as they run in a
        program that closes over them (`jax.jit(functools.partial(model.apply, variables))`):
        kernels that take prepared weights (sparse_direct, CPO) pack them once, not per
        call. Default False: the weights as jit arguments, as `jax.jit(model.apply)` runs.

    Returns:
      A `jaxcps.Plan` with one record per convolution that ran, in program order.

    Raises:
      ValueError: for an unknown or "auto" candidate, `repeats` < 1, or no convolution
        running in `fn(*args)`.
    """
    check_selection(candidates, repeats)
    layers = capture(fn, *args)
    if not layers:
        raise ValueError("no convolution ran in fn(*args)")
    return measure_layers(
        layers,
        candidates=candidates,
        repeats=repeats,
        warmup=warmup,
        progress=progress,
        prepared_weights=prepared_weights,
    )
