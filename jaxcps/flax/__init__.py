"""Flax integration: drop-in `Conv` modules, routing by module path, offline selection.

- `jaxcps.flax.linen.Conv`, `jaxcps.flax.nnx.Conv`: Flax's `Conv` plus an `algorithm`.
- `route(policy, *nnx_models)`: run the convs of unedited models through jaxcps.
- `select(fn, *args)`: time every algorithm on every conv layer's real input -> `jaxcps.Plan`.

Importing this package imports Flax (an optional dependency of jaxcps).
"""

from jaxcps.flax import linen, nnx
from jaxcps.flax.route import route
from jaxcps.flax.select import select

__all__ = ["linen", "nnx", "route", "select"]
