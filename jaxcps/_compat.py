"""What differs between the jax releases jaxcps supports (pyproject.toml), in one place.

Each entry names the release that made it unnecessary: delete it when the floor reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import jax
from jax.extend import core as jcore


def varying_axes(x: jax.Array) -> frozenset[str]:
    """The manual mesh axes along which x varies inside `jax.shard_map` (none outside).

    jax 0.10 moved them from `typeof(x).vma` to `typeof(x).manual_axis_type.varying`.
    """
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    return manual.varying if manual is not None else aval.vma


def _jaxprs_in_params(params: dict[str, Any]) -> Iterator[jcore.Jaxpr]:
    for value in params.values():
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, jcore.Jaxpr):
                yield v
            elif isinstance(v, jcore.ClosedJaxpr):
                yield v.jaxpr


#: The sub-programs among an equation's params (jaxprs, closed or not, alone or in tuples):
#: `jax.extend.core.jaxprs_in_params`, public since jax 0.10.
jaxprs_in_params = getattr(jcore, "jaxprs_in_params", _jaxprs_in_params)


def bind(primitive: jcore.Primitive, invals: Sequence[Any], params: dict[str, Any]) -> Any:
    """Applies an equation's primitive to values, as jax's own jaxpr interpreter does.

    Before jax 0.9, `get_bind_params` also returned functions to pass ahead of the operands.
    """
    bind_params = primitive.get_bind_params(params)
    if isinstance(bind_params, tuple):
        subfuns, bind_params = bind_params
        return primitive.bind(*subfuns, *invals, **bind_params)
    return primitive.bind(*invals, **bind_params)


def shard_map_axis_names(params: dict[str, Any]) -> frozenset[str]:
    """The mesh axes that a shard_map equation makes manual (`jax.shard_map`'s `axis_names`).

    The param is `newly_manual_axes` since jax 0.10.2, `manual_axes` before.
    """
    return params["newly_manual_axes" if "newly_manual_axes" in params else "manual_axes"]
