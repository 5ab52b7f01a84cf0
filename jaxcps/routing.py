"""Routing the convolutions of any JAX program through jaxcps, by key.

- `routed(fn, policy)`: `fn` with each `lax.conv_general_dilated` it traces run by
  `jaxcps.conv_general_dilated` with the algorithm `policy` gives for the conv's key.
- `conv_keys(fn, *args)`: the keys of `fn`'s convolutions, to write a policy against.
- `policy_lookup(policy)`: a policy (an algorithm, a dict of key globs, or a `Plan`) as a
  function from key to algorithm; `jaxcps.flax.route` resolves its policies with it too.

Keys are name-stack paths such as "Net/c1" or "resnet50/conv2_block1_2_conv"; the rule is in
`jaxcps.rewrite`.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax
from jax.extend import core as jcore

from jaxcps.algorithms import ALGORITHMS, PlanLookup, reset_active_plan, set_active_plan
from jaxcps.conv import conv_general_dilated
from jaxcps.plan import Plan
from jaxcps.program import Call
from jaxcps.rewrite import ConvFn, ConvSite, conv_sites, replace_convs

#: What a policy can be: a plan, {key glob: algorithm}, or one algorithm for every conv.
Policy = Plan | Mapping[str, str] | str


def _check(algorithm: Any, where: str) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"{where}: algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    return algorithm


def policy_lookup(policy: Policy) -> PlanLookup:
    """Turns a policy into a function from layer key to algorithm (None when not covered).

    A dict is matched exact key first, then its keys as `fnmatch` globs in insertion order
    (the first match wins); "*" matches across "/". A dict is copied, so later changes to it
    do not affect the lookup.

    Raises:
      ValueError: for an algorithm name not in `jaxcps.ALGORITHMS`.
      TypeError: for a policy of another type.
    """
    if isinstance(policy, Plan):
        return policy.lookup
    if isinstance(policy, str):
        algorithm = _check(policy, "policy")
        return lambda name: algorithm
    if isinstance(policy, Mapping):
        rules = {str(k): _check(v, f"policy[{k!r}]") for k, v in policy.items()}

        def lookup(name: str | None) -> str | None:
            if name is None:
                return None
            if name in rules:
                return rules[name]
            for pattern, algorithm in rules.items():
                if fnmatch.fnmatchcase(name, pattern):
                    return algorithm
            return None

        return lookup
    raise TypeError(
        f"policy must be a jaxcps.Plan, a dict of key patterns to algorithms, or an algorithm "
        f"name, got {type(policy).__name__}"
    )


def conv_keys(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[str]:
    """The keys of the convolutions `fn(*args, **kwargs)` traces, in program order.

    Example usage::

      >>> import jax, jax.numpy as jnp, jaxcps
      >>> def net(x, w):
      ...   with jax.named_scope("stem"):
      ...     x = jax.lax.conv(x, w, (1, 1), "SAME")
      ...   return jax.lax.conv(x, w, (1, 1), "SAME")
      >>> jaxcps.conv_keys(net, jnp.ones((1, 4, 8, 8)), jnp.ones((4, 4, 3, 3)))
      ['stem', '#0']

    Args:
      fn: any JAX callable; it is traced, not run.
      *args, **kwargs: arguments to trace it with (as `routed` takes them).

    Returns:
      The key of every convolution that `routed` would route (see `jaxcps.rewrite`).
    """
    program, _ = Call.of(args, kwargs).trace(fn)
    return [site.key for site in conv_sites(program)]


def _router(lookup: PlanLookup) -> Callable[[ConvSite], ConvFn | None]:
    def replace(site: ConvSite) -> ConvFn | None:
        if lookup(site.key) in (None, "xla", "auto"):
            return None  # keep lax's equation
        # "auto" with the policy as the active plan: the policy's algorithm where its kernel
        # can run this convolution, XLA where it cannot.
        return functools.partial(
            conv_general_dilated, **site.params, algorithm="auto", name=site.key
        )

    return replace


def _trace_routed(
    fn: Callable[..., Any], lookup: PlanLookup, call: Call
) -> tuple[jcore.ClosedJaxpr, Any]:
    """The routed program of `fn` for this call, and the tree of its outputs."""
    program, out_tree = call.trace(fn)
    token = set_active_plan(lookup)
    try:
        return replace_convs(program, _router(lookup)), out_tree
    finally:
        reset_active_plan(token)


def routed(fn: Callable[..., Any], policy: Policy) -> Callable[..., Any]:
    """`fn` with its convolutions run by `jaxcps.conv_general_dilated`, as `policy` says.

    Works on any JAX callable: Flax, Keras 3 (JAX backend), Equinox, Haiku or plain JAX.
    `fn` is traced (`jax.make_jaxpr`) and its program re-traced with every
    `lax.conv_general_dilated` whose key the policy covers replaced by
    `jaxcps.conv_general_dilated` with the policy's algorithm; every other operation is
    kept as it was, also inside jit, scan, cond, while_loop, checkpoint, shard_map and
    custom_jvp / custom_vjp bodies, and vmapped code (whose batch is already folded into the
    convs).

    Keys are the name-stack paths JAX records, made unique by an occurrence index: "Net/c1"
    (Flax linen), "resnet50/conv2_block1_2_conv" (Keras), "eqx.nn.Conv", "eqx.nn.Conv#1"
    (Equinox), "#0", "#1" (code without named scopes). `jaxcps.rewrite` states the rule;
    `jaxcps.conv_keys(fn, *args)` lists them.

    Semantics:
      - Like `jax.jit`: the result is traceable and composes with jit, vmap, grad and the
        other transformations; `fn` is traced once per input structure and shapes/dtypes
        (cached), so a jitted routed function traces `fn` once however often it is called,
        and arrays that `fn` closes over are captured when it is first traced for those
        inputs (pass parameters as arguments to change them between calls). Array and
        number leaves of the arguments are traced; any other leaf (a function, a string) is
        static, as in `equinox.filter_jit`, and part of the cache key.
      - Not covered, "xla" or "auto": the convolution is left as it is.
      - A convolution the named kernel cannot run (1-D or 3-D, lhs_dilation,
        batch_group_count > 1, a dtype the kernels do not take) stays on XLA, as under
        `algorithm="auto"`.
      - Derivatives: differentiating the routed function goes through jaxcps's own rules
        (derivatives on XLA). Gradient convolutions that `fn` itself computes (a `jax.grad`
        inside `fn`) are left on XLA and have no key. The custom rules of custom_jvp /
        custom_vjp functions are kept as written, so convolutions inside such a function
        are routed when it is evaluated, not when JAX runs its rule to differentiate it.

    Example usage::

      >>> import jax, jax.numpy as jnp, jaxcps
      >>> def net(x, w1, w2):
      ...   with jax.named_scope("stem"):
      ...     x = jax.nn.relu(jax.lax.conv(x, w1, (1, 1), "SAME"))
      ...   with jax.named_scope("head"):
      ...     return jax.lax.conv(x, w2, (1, 1), "SAME")
      >>> x, w = jnp.ones((1, 4, 8, 8)), jnp.ones((4, 4, 3, 3))
      >>> fast = jax.jit(jaxcps.routed(net, {"head": "cps"}))
      >>> fast(x, w, w).shape
      (1, 4, 8, 8)

    Args:
      fn: any JAX callable taking pytrees (of arrays, numbers and static leaves) and
        returning pytrees of arrays.
      policy: one algorithm for every convolution (e.g. "cpo"), a dict from key globs to
        algorithms (exact key first, then `fnmatch` globs in insertion order; "*" also
        matches "/"), or a `jaxcps.Plan` (from `jaxcps.select`).

    Returns:
      A function with `fn`'s signature and outputs.

    Raises:
      ValueError: for an algorithm name not in `jaxcps.ALGORITHMS` (at once).
      TypeError: for a policy of another type (at once).
    """
    lookup = policy_lookup(policy)
    programs: dict[Hashable, tuple[jcore.ClosedJaxpr, Any]] = {}

    # Name and docstring from fn, not its attributes: fn may be a model object.
    @functools.wraps(fn, updated=())
    def run(*args: Any, **kwargs: Any) -> Any:
        call = Call.of(args, kwargs)
        signature = call.signature()
        if signature not in programs:
            programs[signature] = _trace_routed(fn, lookup, call)
        program, out_tree = programs[signature]
        return jax.tree.unflatten(out_tree, jcore.jaxpr_as_fun(program)(*call.traced))

    return run
