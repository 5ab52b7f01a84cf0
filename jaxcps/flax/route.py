"""`route(policy)`: run the convolutions of existing Flax models through jaxcps, unedited."""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any

from flax import nnx

from jaxcps.algorithms import PlanLookup, reset_active_plan, set_active_plan
from jaxcps.conv import conv_general_dilated
from jaxcps.flax import linen as jlinen
from jaxcps.flax import nnx as jnnx
from jaxcps.flax._hooks import swap_convs
from jaxcps.routing import Policy, policy_lookup

# The lookup of the innermost open `route` in this context (thread), composed with the
# enclosing ones; None outside any `route`.
_current: contextvars.ContextVar[PlanLookup | None] = contextvars.ContextVar(
    "jaxcps_route", default=None
)


def _compose(inner: PlanLookup, outer: PlanLookup | None) -> PlanLookup:
    if outer is None:
        return inner

    def lookup(name: str | None) -> str | None:
        chosen = inner(name)
        return chosen if chosen is not None else outer(name)

    return lookup


def _routed_conv(lookup: PlanLookup) -> Callable[[str, Any], Callable[..., Any] | None]:
    def conv_for(path: str, module: Any) -> Callable[..., Any] | None:
        if isinstance(module, (jlinen.Conv, jnnx.Conv)) and module.algorithm != "auto":
            return None  # a drop-in module with an explicit algorithm keeps it
        algorithm = lookup(path)
        if algorithm is None:
            return None
        return functools.partial(conv_general_dilated, algorithm=algorithm, name=path)

    return conv_for


@contextlib.contextmanager
def route(policy: Policy, *models: nnx.Module) -> Iterator[None]:
    """Runs Flax convolutions through `jaxcps.conv_general_dilated` by module path.

    Under the context, every linen `nn.Conv` and every `nnx.Conv` inside `models` whose path
    the policy covers runs `jaxcps.conv_general_dilated` with the algorithm the policy gives;
    convolutions it does not cover are left as they are (XLA for plain Flax modules). Paths
    are the ones Flax shows: "features/Conv_3" for linen (`module.path`), attribute paths
    such as "blocks/0/conv1" for NNX (`nnx.iter_modules`). Drop-in modules
    (`jaxcps.flax.linen.Conv`, `jaxcps.flax.nnx.Conv`) with an explicit `algorithm` keep it;
    with `algorithm="auto"` they are routed like plain modules, and the policy also answers
    `jaxcps.conv_general_dilated(..., algorithm="auto", name=...)` calls.

    Semantics:
      - Trace time: routing acts when a function is traced. A function jitted inside the
        context keeps its routing afterwards (that is how a plan is "compiled in"); call
        `jax.jit` on a fresh function or clear its cache to change it. `nnx.jit` re-traces
        on its own, because the conv function is part of the module's static graph.
      - Nesting: an inner `route` is consulted first and falls back to the enclosing ones
        for paths it does not cover; leaving it restores the outer routing exactly.
      - Threads: linen routing and the plan hook are per thread (Flax's interceptor stack
        is thread-local, the plan hook a context variable). NNX routing sets the
        `conv_general_dilated` attribute of the given model objects, so other threads using
        the same objects see it while the context is open; give each thread its own model
        (e.g. `nnx.clone`) or open the context around all of them.
      - Restoring: on exit, also when an exception escapes, every modified attribute gets
        its previous value back. Parameters are never touched.

    Example usage::

      >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxcps.flax
      >>> model = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Conv(8, (3, 3))])
      >>> x = jnp.ones((1, 16, 16, 3))
      >>> variables = model.init(jax.random.key(0), x)
      >>> with jaxcps.flax.route({"layers_2": "cpo"}):
      ...   y = jax.jit(model.apply)(variables, x)
      >>> y.shape
      (1, 16, 16, 8)

    Args:
      policy: a `jaxcps.Plan` (exact paths), a dict from module-path glob patterns to
        algorithms (exact key first, then patterns in order; "*" also matches "/"), or one
        algorithm name for every conv.
      *models: the NNX models whose `nnx.Conv` modules are routed (none needed for linen).

    Returns:
      A context manager.

    Raises:
      ValueError: for an algorithm name not in `jaxcps.ALGORITHMS`.
      TypeError: for a policy of another type.
    """
    lookup = _compose(policy_lookup(policy), _current.get())
    route_token = _current.set(lookup)
    plan_token = set_active_plan(lookup)
    try:
        with swap_convs(_routed_conv(lookup), models):
            yield
    finally:
        reset_active_plan(plan_token)
        _current.reset(route_token)
