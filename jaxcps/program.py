"""Tracing a Python function call into a program (a closed jaxpr).

Array and number leaves of the arguments are the program's inputs, as in `jax.jit`; any other
leaf (a function, a string, ...) is static, as in `equinox.filter_jit`, so that models which
keep their activation functions in the pytree trace as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

# Stands for a traced leaf among the static ones.
_TRACED = object()


def _is_traced(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, bool, int, float, complex))


@dataclasses.dataclass(frozen=True)
class Call:
    """The arguments of one call, split into traced leaves and the static rest.

    Attributes:
      tree: the structure of (args, kwargs).
      static: every leaf, with a placeholder for the traced ones.
      traced: the traced leaves, in order: the program's inputs.
    """

    tree: Any
    static: tuple[Any, ...]
    traced: list[Any]

    @classmethod
    def of(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        leaves, tree = jax.tree.flatten((args, kwargs))
        return cls(
            tree,
            tuple(_TRACED if _is_traced(leaf) else leaf for leaf in leaves),
            [leaf for leaf in leaves if _is_traced(leaf)],
        )

    def signature(self) -> Hashable:
        """What a program traced for this call depends on: structure, static leaves, and the
        shape, dtype (and sharding, weak type) of each traced leaf."""
        return self.tree, self.static, tuple(jax.typeof(leaf) for leaf in self.traced)

    def trace(self, fn: Callable[..., Any]) -> tuple[jcore.ClosedJaxpr, Any]:
        """`fn` called with these arguments, as a program of the traced leaves, and the
        tree of its outputs."""

        def flat_fn(*values: Any) -> Any:
            given = iter(values)
            leaves = [next(given) if leaf is _TRACED else leaf for leaf in self.static]
            args, kwargs = jax.tree.unflatten(self.tree, leaves)
            return fn(*args, **kwargs)

        program, out_shapes = jax.make_jaxpr(flat_fn, return_shape=True)(*self.traced)
        return program, jax.tree.structure(out_shapes)
