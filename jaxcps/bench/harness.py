"""One benchmark case: its inputs, the contenders, their interleaved timing, and how much of a
sparse kernel's time goes into building its compressed form.

The contenders are XLA and every jaxcps kernel, jitted, and with `--peers` the dense engines of
`jaxcps.bench.peers`, each called on its own native layout (converted before timing). The
timed region of a kernel that skips zeros includes building its compressed form (it happens
inside the kernel); `time_case` also measures that share, inside the C++ builders, in the
same timed calls.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxcps
from jaxcps._progress import ProgressBar
from jaxcps._targets import _ffi
from jaxcps.algorithms import FFI_ALGORITHMS
from jaxcps.bench import peers
from jaxcps.bench.activations import relu_activation
from jaxcps.bench.layers import Case
from jaxcps.timing import time_interleaved

#: The contenders timed together in the main process, XLA first (it is the reference).
CONTENDERS: tuple[str, ...] = ("xla", *FFI_ALGORITHMS)
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def case_inputs(
    case: Case, *, seed: int, uniform: bool, dead_channels: float
) -> tuple[np.ndarray, np.ndarray]:
    """The seeded activation and He-scaled weights of `case` (equal in every process)."""
    case_seed = zlib.crc32(f"{case.id}/{seed}".encode())
    x = relu_activation(
        case.input_shape,
        case.zeros,
        clustered=not uniform,
        dead_channels=dead_channels,
        seed=case_seed,
    )
    kh, kw, c, o = case.layer.kernel_shape
    rng = np.random.default_rng(case_seed + 1)
    w = (rng.standard_normal((kh, kw, c, o)) * np.sqrt(2.0 / (kh * kw * c))).astype(np.float32)
    return x, w


def jitted_contenders(
    case: Case, constant_weights: np.ndarray | None = None
) -> dict[str, Callable[..., jax.Array]]:
    """name -> jitted convolution `(x, w) -> y` of `case`, for every name in `CONTENDERS`.

    With `constant_weights`, every function closes over those weights and ignores its `w`, as
    a jitted model closes over its parameters for inference: XLA sees them as a constant, and
    a kernel that prepares weights (`jaxcps.prepared`) packs them once, not per call, as the
    dense engines do theirs.
    """
    layer = case.layer
    conv = {
        "window_strides": layer.strides,
        "padding": layer.padding,
        "dimension_numbers": _DIMENSION_NUMBERS,
    }
    constant = None if constant_weights is None else jnp.asarray(constant_weights)

    def weights(w: jax.Array) -> jax.Array:
        return w if constant is None else constant

    fns: dict[str, Callable[..., jax.Array]] = {
        "xla": jax.jit(lambda x, w: lax.conv_general_dilated(x, weights(w), **conv))
    }
    for algorithm in CONTENDERS[1:]:
        fns[algorithm] = jax.jit(
            lambda x, w, a=algorithm: jaxcps.conv_general_dilated(
                x, weights(w), **conv, algorithm=a
            )
        )
    return fns


def dense_engines(
    case: Case, w: np.ndarray, engines: Sequence[str], threads: int
) -> dict[str, peers.DenseConv]:
    """engine -> its dense convolution of `case` with weights `w`, for each of `engines`."""
    layer = case.layer
    return {
        engine: peers.make_dense_conv(
            engine,
            w,
            input_shape_nhwc=case.input_shape,
            window_strides=layer.strides,
            padding=layer.padding,
            threads=threads,
        )
        for engine in engines
    }


class CaseTimes(NamedTuple):
    """What `time_case` measured, in seconds: every contender's time per round, and for the
    contenders that build a compressed form (or masks), the build's time within each of those
    same calls (`_ffi.build_profile`)."""

    times: dict[str, list[float]]
    builds: dict[str, list[float]]


def time_case(
    case: Case,
    fns: dict[str, Callable[..., jax.Array]],
    x: np.ndarray,
    w: np.ndarray,
    *,
    engines: Mapping[str, peers.DenseConv] | None = None,
    repeats: int,
    warmup: int,
    bar: ProgressBar,
) -> CaseTimes:
    """Times the jitted `fns` and the dense `engines` interleaved, and the builds inside them.

    Each contender is compiled or run once before the rounds; an engine's input is converted
    to its layout once, before timing, so only its `run` is timed. Build timing stays on
    through the rounds (a clock read per build) and is read after each call, outside its
    timed region.
    """
    xd, wd = jnp.asarray(x), jnp.asarray(w)
    contenders: dict[str, Callable[[], object]] = {
        name: functools.partial(fn, xd, wd) for name, fn in fns.items()
    }
    for name, conv in (engines or {}).items():
        contenders[name] = functools.partial(conv.run, conv.prepare(x))
    bar.advance(0, case.id)
    for call in contenders.values():  # compile outside the timed rounds
        jax.block_until_ready(call())
    if warmup:  # untimed rounds, run apart so that their builds are not counted below
        time_interleaved(contenders, repeats=warmup, warmup=0)
    bar.advance(warmup, case.id)
    builds: dict[str, list[float]] = {}

    def record_build(name: str) -> None:
        count, seconds = _ffi.build_profile(True)
        if count:
            builds.setdefault(name, []).append(seconds / count)

    _ffi.build_profile(True)  # on, and its totals reset, for the timed rounds only
    try:
        times = time_interleaved(
            contenders,
            repeats=repeats,
            warmup=0,
            on_round=lambda _: bar.advance(1, case.id),
            after_call=record_build,
        )
    finally:
        _ffi.build_profile(False)
    return CaseTimes(times, builds)


def outputs(
    fns: dict[str, Callable[..., jax.Array]],
    engines: Mapping[str, peers.DenseConv],
    x: np.ndarray,
    w: np.ndarray,
) -> dict[str, np.ndarray]:
    """name -> the NHWC result of every contender, to verify against XLA's."""
    results = {name: np.asarray(fn(x, w)) for name, fn in fns.items()}
    return results | {name: conv(x) for name, conv in engines.items()}


def xla_conv_path(fn: Callable[..., jax.Array], *example: Any) -> str:
    """Which XLA CPU path runs the convolution in jitted `fn`: "ynn", "eigen" or "unknown".

    Read from the compiled HLO: YNNPACK convolutions sit in a `__ynn_fusion`; a plain
    `convolution` instruction outside one runs on XLA's Eigen runtime.
    """
    text = fn.lower(*example).compile().as_text()
    if "__ynn_fusion" in text:
        return "ynn"
    if " convolution(" in text:
        return "eigen"
    return "unknown"
