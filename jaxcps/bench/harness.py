"""One benchmark case: its inputs, the jitted contenders, their interleaved timing, and how much
of a sparse kernel's time goes into building its compressed form.

The timed region of a kernel that skips zeros includes building its compressed form (it
happens inside the kernel); `build_seconds` measures that share inside the C++ builders.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxcps
from jaxcps._progress import ProgressBar
from jaxcps._targets import _ffi
from jaxcps.algorithms import FFI_ALGORITHMS
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
    x = relu_activation(case.layer.input_shape, case.zeros, clustered=not uniform,
                        dead_channels=dead_channels, seed=case_seed)
    kh, kw, c, o = case.layer.kernel_shape
    rng = np.random.default_rng(case_seed + 1)
    w = (rng.standard_normal((kh, kw, c, o)) * np.sqrt(2.0 / (kh * kw * c))).astype(np.float32)
    return x, w


def jitted_contenders(case: Case) -> dict[str, Callable[..., jax.Array]]:
    """name -> jitted convolution of `case`, for every name in `CONTENDERS`."""
    layer = case.layer
    conv = dict(window_strides=layer.strides, padding=layer.padding,
                dimension_numbers=_DIMENSION_NUMBERS)
    fns: dict[str, Callable[..., jax.Array]] = {
        "xla": jax.jit(lambda x, w: lax.conv_general_dilated(x, w, **conv))
    }
    for algorithm in CONTENDERS[1:]:
        fns[algorithm] = jax.jit(
            lambda x, w, a=algorithm: jaxcps.conv_general_dilated(x, w, **conv, algorithm=a)
        )
    return fns


def time_case(
    case: Case,
    fns: dict[str, Callable[..., jax.Array]],
    x: np.ndarray,
    w: np.ndarray,
    *,
    repeats: int,
    warmup: int,
    bar: ProgressBar,
) -> dict[str, list[float]]:
    """Compiles every contender, then times them interleaved; name -> seconds per round."""
    xd, wd = jnp.asarray(x), jnp.asarray(w)
    bar.advance(0, case.id)
    for fn in fns.values():  # compile outside the timed rounds
        jax.block_until_ready(fn(xd, wd))
    bar.advance(warmup, case.id)
    return time_interleaved(
        {name: (lambda fn=fn: fn(xd, wd)) for name, fn in fns.items()},
        repeats=repeats,
        warmup=warmup,
        on_round=lambda _: bar.advance(1, case.id),
    )


def build_seconds(fn: Callable[..., jax.Array], x: np.ndarray, w: np.ndarray,
                  calls: int = 5) -> float:
    """Mean seconds that the kernel in `fn` spends building its compressed form per call,
    timed inside the kernel on XLA's thread pool (`_ffi.build_profile`)."""
    xd, wd = jnp.asarray(x), jnp.asarray(w)
    _ffi.build_profile(True)
    try:
        for _ in range(calls):
            jax.block_until_ready(fn(xd, wd))
    finally:
        builds, seconds = _ffi.build_profile(False)
    return seconds / max(builds, 1)


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
