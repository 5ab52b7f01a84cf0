"""What differs between the jax releases jaxcps supports (pyproject.toml), in one place.

Each entry names the release that made it unnecessary: delete it when the floor reaches it.
"""

from __future__ import annotations

import jax


def varying_axes(x: jax.Array) -> frozenset[str]:
    """The manual mesh axes along which x varies inside `jax.shard_map` (none outside).

    jax 0.10 moved them from `typeof(x).vma` to `typeof(x).manual_axis_type.varying`.
    """
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    return manual.varying if manual is not None else aval.vma
