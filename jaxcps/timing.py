"""Timing by the benchmark protocol: contenders in one process, interleaved round by round,
after warm-up, reported as medians. Used by selection (`jaxcps.flax.select`), `jaxcps bench`
and `jaxcps demo`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import jax


def time_interleaved(
    contenders: Mapping[str, Callable[[], object]],
    *,
    repeats: int = 7,
    warmup: int = 2,
    on_round: Callable[[int], None] | None = None,
    after_call: Callable[[str], None] | None = None,
) -> dict[str, list[float]]:
    """Times each zero-argument callable `repeats` times, interleaved, in seconds.

    Each round calls every contender once, in a rotating order so that none always runs
    first (after another's cache traffic) or last. Results are blocked on, so the time is
    the computation's, not the dispatch's. `after_call(name)`, if given, runs after each
    timed call, outside its timed region.

    Returns:
      name -> list of `repeats` wall-clock times in seconds.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            jax.block_until_ready(contenders[name]())
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)] if names else []
        for name in order:
            start = time.perf_counter()
            jax.block_until_ready(contenders[name]())
            times[name].append(time.perf_counter() - start)
            if after_call is not None:
                after_call(name)
        if on_round is not None:
            on_round(r)
    return times


def jax_dispatch(*, synchronous: bool = False) -> str:
    """How JAX dispatches this process's CPU computations: "synchronous" or "asynchronous".

    With `synchronous`, first makes JAX run them on the calling thread, as ONNX Runtime's and
    OpenVINO's `run` do, if JAX has not yet created its CPU client (it does when it first needs
    a device: a computation, `jax.devices()`, `device_put`), which fixes the mode. JAX's
    default hands each call to a thread of XLA's client and wakes the caller when it is done:
    a hand-off per timed call that a compiled network pays once, not per layer (measured in
    the README's results). The answer reads JAX's flag, which a client created before it was
    last changed does not follow.
    """
    from jax._src import xla_bridge  # whether the client exists: no public API says

    flag = "jax_cpu_enable_async_dispatch"
    if synchronous and not xla_bridge.backends_are_initialized():
        jax.config.update(flag, False)
    return "asynchronous" if jax.config.values[flag] else "synchronous"


def medians(times: Mapping[str, list[float]]) -> dict[str, float]:
    """name -> median of its times."""
    return {name: statistics.median(ts) for name, ts in times.items()}
