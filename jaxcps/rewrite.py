"""Finding and replacing the convolutions of a traced JAX program.

`conv_sites(program)` lists the `lax.conv_general_dilated` equations of a program traced with
`jax.make_jaxpr`, including those inside the sub-programs of higher-order primitives (jit,
scan, cond, while_loop, checkpoint, shard_map, custom_jvp and custom_vjp bodies, ...), each
with its key. `replace_convs(program, replace)` re-traces the program equation by equation,
computing each convolution for which `replace` returns a function with that function, and
binding every other equation as it was (a higher-order one with its sub-programs re-traced
the same way, so their structure stays: a scan stays a scan).

Keys
----
A convolution's key is its name-stack path: the names of the `jax.named_scope`s open when it
was traced, outermost first, joined by "/", continued across the sub-programs it sits in.
Frameworks open one scope per layer, so:

- Flax linen: the class name of the top module, then the module path: "Net/c1",
  "ResNet/stage1/Conv_0".
- Keras 3 (JAX backend): model and layer names: "resnet50/conv2_block1_2_conv".
- Haiku: the module names: "sequential/conv2_d_1".
- Equinox: the class: "eqx.nn.Conv".
- Flax NNX and plain JAX open none: the path is empty, unless the code uses
  `jax.named_scope` itself.

The transformation wrappers that JAX records around these names (as in "vmap(Net/c1)" or
"jvp(Net/c1)") are dropped; `jax.jit` records no name in a traced program. A path is made
unique by an occurrence index, counted in program order (the order `jax.make_jaxpr` prints):
the first convolution with path P has key P, the next ones "P#1", "P#2", ...; convolutions
with an empty path are "#0", "#1", .... A layer applied twice thus has keys "P" and "P#1",
and a convolution in a loop body has one key however often it runs.

Convolutions that reverse-mode differentiation produced (their name stack holds a
"transpose", as do the gradient convolutions of a `jax.grad` traced inside the program) have
no key and are never replaced: derivatives stay on XLA's dense convolution, as those of
`jaxcps.conv_general_dilated` do. The forward convolutions of such a program keep the keys
they have without the `jax.grad`, except inside custom_jvp / custom_vjp functions, whose
convolutions are then the ones their rules compute, keyed by the scopes the rules open.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
from jax import lax
from jax.extend import core as jcore
from jax.extend import source_info_util

from jaxcps._compat import bind, jaxprs_in_params, shard_map_axis_names

ConvFn = Callable[[jax.Array, jax.Array], jax.Array]

# The class of a named scope in a name stack (the other kind is a transformation); the public
# API has no name for it.
_NAMED_SCOPE = type(source_info_util.new_name_stack("scope").stack[0])


@dataclasses.dataclass(frozen=True)
class ConvSite:
    """One convolution of a traced program.

    Attributes:
      key: its key (see the module docstring), e.g. "Net/c1" or "#0".
      params: the arguments of `lax.conv_general_dilated` after (lhs, rhs) as the primitive
        recorded them: window_strides, padding (explicit pairs), lhs_dilation, rhs_dilation,
        dimension_numbers (a `lax.ConvDimensionNumbers`), feature_group_count,
        batch_group_count, precision, preferred_element_type, out_sharding.
    """

    key: str
    params: Mapping[str, Any]


#: Gives the function that computes a convolution instead, or None to keep it as it is.
Replace = Callable[[ConvSite], ConvFn | None]


@dataclasses.dataclass(frozen=True)
class _Scope:
    """The names around an equation, and whether reverse-mode differentiation made it."""

    path: tuple[str, ...] = ()
    transposed: bool = False

    def enter(self, eqn: jcore.JaxprEqn) -> _Scope:
        """The scope of `eqn` itself (and of its sub-programs)."""
        stack = eqn.source_info.name_stack.stack
        names = tuple(item.name for item in stack if type(item) is _NAMED_SCOPE)
        transposed = any(
            type(item) is not _NAMED_SCOPE and item.name == "transpose" for item in stack
        )
        return _Scope(self.path + names, self.transposed or transposed)


class _Keys:
    """Hands out keys in program order: path, path#1, ...; #0, #1, ... for the empty path."""

    def __init__(self) -> None:
        self._count: collections.Counter[str] = collections.Counter()

    def site(self, eqn: jcore.JaxprEqn, scope: _Scope) -> ConvSite | None:
        if scope.transposed:
            return None
        path = "/".join(scope.path)
        n = self._count[path]
        self._count[path] += 1
        return ConvSite(path if path and n == 0 else f"{path}#{n}", dict(eqn.params))


_PROGRAMS = (jcore.ClosedJaxpr, jcore.Jaxpr)


def _is_conv(eqn: jcore.JaxprEqn) -> bool:
    return eqn.primitive is lax.conv_general_dilated_p


def _has_conv(jaxpr: jcore.Jaxpr) -> bool:
    return any(
        _is_conv(eqn) or any(_has_conv(sub) for sub in jaxprs_in_params(eqn.params))
        for eqn in jaxpr.eqns
    )


def conv_sites(program: jcore.ClosedJaxpr) -> list[ConvSite]:
    """Every convolution of `program` that has a key, in program order."""
    keys = _Keys()

    def walk(jaxpr: jcore.Jaxpr, scope: _Scope) -> Iterator[ConvSite]:
        for eqn in jaxpr.eqns:
            inner = scope.enter(eqn)
            if _is_conv(eqn):
                site = keys.site(eqn, inner)
                if site is not None:
                    yield site
            for sub in jaxprs_in_params(eqn.params):
                yield from walk(sub, inner)

    return list(walk(program.jaxpr, _Scope()))


def replace_convs(program: jcore.ClosedJaxpr, replace: Replace) -> jcore.ClosedJaxpr:
    """`program` with the convolutions that `replace` gives a function for computed by it.

    Keys are the same as `conv_sites(program)` gives; `replace` is called once per site, in
    program order. Equations are re-bound with their source information (name stack,
    traceback) and context, so the new program reads like the old one.
    """
    return _retrace(program, _Scope(), _Keys(), replace)


def _retrace(
    program: jcore.ClosedJaxpr, scope: _Scope, keys: _Keys, replace: Replace
) -> jcore.ClosedJaxpr:
    if not _has_conv(program.jaxpr):
        return program
    return jax.make_jaxpr(
        lambda *args: _evaluate(program.jaxpr, program.consts, args, scope, keys, replace)
    )(*program.in_avals)


def _evaluate(
    jaxpr: jcore.Jaxpr,
    consts: Sequence[Any],
    args: Sequence[Any],
    scope: _Scope,
    keys: _Keys,
    replace: Replace,
) -> list[Any]:
    env: dict[jcore.Var, Any] = dict(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))

    def read(atom: Any) -> Any:
        return atom.val if isinstance(atom, jcore.Literal) else env[atom]

    for eqn in jaxpr.eqns:
        inner = scope.enter(eqn)
        invals = [read(v) for v in eqn.invars]
        name_stack = source_info_util.current_name_stack() + eqn.source_info.name_stack
        with (
            source_info_util.user_context(eqn.source_info.traceback, name_stack=name_stack),
            eqn.ctx.manager,
        ):
            outs = _evaluate_equation(eqn, invals, inner, keys, replace)
        env.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]))
    return [read(v) for v in jaxpr.outvars]


def _evaluate_equation(
    eqn: jcore.JaxprEqn, invals: list[Any], scope: _Scope, keys: _Keys, replace: Replace
) -> Any:
    if _is_conv(eqn):
        site = keys.site(eqn, scope)
        fn = replace(site) if site is not None else None
        if fn is not None:
            return fn(*invals)
        params = eqn.params
    elif eqn.primitive.name == "shard_map" and _has_conv(eqn.params["jaxpr"]):
        return _evaluate_shard_map(eqn, invals, scope, keys, replace)
    else:
        params = {
            name: _retrace_param(value, scope, keys, replace) for name, value in eqn.params.items()
        }
    return bind(eqn.primitive, invals, params)


def _evaluate_shard_map(
    eqn: jcore.JaxprEqn, invals: list[Any], scope: _Scope, keys: _Keys, replace: Replace
) -> list[Any]:
    """A shard_map rebuilt through `jax.shard_map`: its body can only be traced inside one
    (it refers to the manual mesh axes)."""
    params = eqn.params
    body = params["jaxpr"]
    return jax.shard_map(
        lambda *args: tuple(_evaluate(body, (), args, scope, keys, replace)),
        mesh=params["mesh"],
        in_specs=params["in_specs"],
        out_specs=params["out_specs"],
        axis_names=shard_map_axis_names(params),
        check_vma=params["check_vma"],
    )(*invals)


def _retrace_param(value: Any, scope: _Scope, keys: _Keys, replace: Replace) -> Any:
    """A primitive's parameter with the sub-programs in it re-traced."""
    if isinstance(value, jcore.ClosedJaxpr):
        return _retrace(value, scope, keys, replace)
    if isinstance(value, jcore.Jaxpr):
        closed = _retrace(jcore.ClosedJaxpr(value, ()), scope, keys, replace)
        if closed.consts:
            raise NotImplementedError(
                "jaxcps cannot rewrite this sub-program: its new version captures constants, "
                "which an open jaxpr cannot hold"
            )
        return closed.jaxpr
    if isinstance(value, tuple) and any(isinstance(v, _PROGRAMS) for v in value):
        return tuple(_retrace_param(v, scope, keys, replace) for v in value)  # cond's branches
    return value
