"""Ahead-of-time export of programs that use jaxcps, with `jax.export`.

`jax.export` refuses custom calls that have no compatibility guarantee, which jaxcps's FFI
targets are. `export_checks()` is the documented opt-in for exactly those targets:

    exported = jax.export.export(jax.jit(f), disabled_checks=jaxcps.export_checks())(x)
    blob = exported.serialize()              # bytes (needs the `flatbuffers` package)

    # Later, in any process:
    import jaxcps                            # registers the targets the program calls
    y = jax.export.deserialize(blob).call(x)

The serialized program calls jaxcps's targets by name, with their buffers and attributes as
this jaxcps lays them out. It is tied to that FFI ABI: deserialize it with the same jaxcps
version (and import jaxcps first, or the targets are unknown to XLA).
"""

from __future__ import annotations

import jax

from jaxcps._targets import PREPARED_TARGET, target_name
from jaxcps.algorithms import KERNELS


def export_checks() -> list[jax.export.DisabledSafetyCheck]:
    """The `disabled_checks` that let `jax.export.export` serialize jaxcps's custom calls.

    One `DisabledSafetyCheck.custom_call` per FFI target that jaxcps registers, and nothing
    else: custom calls of other libraries still fail the check.

    Example usage::

      >>> import jax, jax.numpy as jnp, jaxcps
      >>> f = jax.jit(lambda x, w: jaxcps.conv_general_dilated(
      ...     x, w, (1, 1), "SAME", algorithm="cps"))
      >>> x, w = jnp.ones((1, 3, 8, 8)), jnp.ones((4, 3, 3, 3))
      >>> exported = jax.export.export(f, disabled_checks=jaxcps.export_checks())(x, w)
      >>> exported.call(x, w).shape
      (1, 4, 8, 8)

    Returns:
      A new list, to pass as `disabled_checks` (alone or with checks of your own).
    """
    targets = [target_name(k) for k in KERNELS] + [PREPARED_TARGET]
    return [jax.export.DisabledSafetyCheck.custom_call(t) for t in targets]
