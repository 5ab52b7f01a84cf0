"""Weights packed once, in a kernel's own layout, when they are known as the call is traced.

sparse_direct and CPO pack each output tile's weights into a contiguous layout on every call;
on few-pixel layers (7x7 and 14x14 maps at batch 1) that copy is a large share of the call,
and in a whole network, whose weights are not in the caches, a larger one. The dense engines
pack a model's constant weights once, when a session is made. The same holds
here for weights that are concrete when the convolution is traced: closed over by a jitted
function (`jax.jit(functools.partial(model.apply, params))`), or passed to an eager call.
jax arrays are immutable, so such weights are packed once, by the kernel's own C++ code
(`_ffi.prepare_weights`), and the packed copy goes to the kernel as one more operand of its
FFI call. Weights that are traced (arguments of `jax.jit`, `grad`, `vmap`) and numpy arrays
(mutable) are packed per call, as before.

The packed copy is kept for as long as the weights array lives (a weak reference), so a
second trace or eager call with the same array does not pack again; it costs as much memory
as the weights, with each group's outputs padded to a multiple of 16. Weights holding NaN or
Inf are never prepared: the kernel's own per-call path finds them and falls back to a dense
kernel.
"""

from __future__ import annotations

import dataclasses
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from jaxcps._targets import _ffi, active_isa
from jaxcps.algorithms import KERNELS


@dataclasses.dataclass(frozen=True)
class PreparedWeights:
    """Weights in a kernel's own layout: a 1-D float32 array and the tag of that layout (it
    depends on the instruction set's tile widths; the FFI handler ignores weights prepared for
    another and packs the originals itself)."""

    weights: jax.Array
    layout: int


# (id of the weights array, algorithm, permutation to HWIO, groups, instruction set) ->
# (weak reference to the array, its prepared weights or None when they are not finite).
# An entry goes when its array does; the array's id cannot be reused before that.
_cache: dict[tuple, tuple[weakref.ref, PreparedWeights | None]] = {}


def prepared_weights(
    algorithm: str, rhs: jax.Array, rhs_perm: tuple[int, ...], groups: int
) -> PreparedWeights | None:
    """`algorithm`'s prepared weights of `rhs` (in the caller's layout; `rhs_perm` takes it to
    HWIO), or None when the kernel takes none, `rhs` is traced, not a `jax.Array` (a numpy
    array is mutable), empty or not all on this process, a weight is NaN or infinite (cached),
    or there is no memory for the copy (not cached)."""
    if (
        not KERNELS[algorithm].prepares
        or isinstance(rhs, jax.core.Tracer)
        or not isinstance(rhs, jax.Array)
        or rhs.is_deleted()
        or not rhs.is_fully_addressable
        or rhs.size == 0
    ):
        return None
    key = (id(rhs), algorithm, rhs_perm, groups, active_isa())
    hit = _cache.get(key)
    if hit is not None and hit[0]() is rhs:
        return hit[1]
    hwio = np.ascontiguousarray(np.transpose(np.asarray(rhs), rhs_perm), dtype=np.float32)
    try:
        made = _ffi.prepare_weights(algorithm, hwio, groups)
    except MemoryError:  # the kernel packs per call, as for traced weights; not cached
        return None
    prepared = None
    if made is not None:
        with jax.ensure_compile_time_eval():  # a concrete array, even inside a trace
            prepared = PreparedWeights(jnp.asarray(made[0]), int(made[1]))
    _cache[key] = (weakref.ref(rhs), prepared)
    weakref.finalize(rhs, _cache.pop, key, None).atexit = False
    return prepared
