"""The measuring half of selection: time captured conv layers with every candidate.

Shared by `jaxcps.select` (any JAX program, layers keyed by name-stack path) and
`jaxcps.flax.select` (Flax modules, keyed by module path); each captures layers its own way,
as `CapturedConv`s, and `measure_layers` turns them into a `jaxcps.Plan`. Each layer is timed
alone with every candidate (`jax.jit`, warmed up, interleaved rounds, median:
`jaxcps.timing`), and the fastest wins.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcps.algorithms import FFI_ALGORITHMS
from jaxcps.conv import conv_general_dilated
from jaxcps.footprint import footprint
from jaxcps.geometry import resolve_conv
from jaxcps.plan import LayerRecord, Plan
from jaxcps.progress import ProgressBar
from jaxcps.timing import medians, time_interleaved

#: Candidates selection times by default: every algorithm except "auto".
DEFAULT_CANDIDATES: tuple[str, ...] = ("xla", *FFI_ALGORITHMS)


@dataclasses.dataclass
class CapturedConv:
    """One conv layer's call: its key, operands and `conv_general_dilated` arguments."""

    path: str
    lhs: np.ndarray
    rhs: np.ndarray
    window_strides: Any
    padding: Any
    options: dict[str, Any]

    def run(self, algorithm: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """The jitted standalone conv of this layer with `algorithm`."""
        return jax.jit(
            functools.partial(
                conv_general_dilated,
                window_strides=self.window_strides,
                padding=self.padding,
                algorithm=algorithm,
                **self.options,
            )
        )


def check_selection(candidates: Sequence[str], repeats: int) -> None:
    """Raises ValueError for an unknown or "auto" candidate, or `repeats` < 1."""
    bad = [c for c in candidates if c not in DEFAULT_CANDIDATES]
    if bad or not candidates:
        raise ValueError(
            f"candidates must be a non-empty selection of {DEFAULT_CANDIDATES}, got "
            f"{tuple(candidates)!r}"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")


def _footprints(layer: CapturedConv, candidates: Sequence[str]) -> dict[str, int | None]:
    resolved = resolve_conv(
        layer.lhs.shape,
        layer.rhs.shape,
        layer.window_strides,
        layer.padding,
        layer.options["lhs_dilation"],
        layer.options["rhs_dilation"],
        layer.options["dimension_numbers"],
        layer.options["feature_group_count"],
        layer.options["batch_group_count"],
    )
    x = np.transpose(layer.lhs, resolved.lhs_perm)
    kernel_shape = tuple(layer.rhs.shape[i] for i in resolved.rhs_perm)
    result: dict[str, int | None] = {}
    for algorithm in candidates:
        if algorithm not in FFI_ALGORITHMS:
            result[algorithm] = None
            continue
        try:
            result[algorithm] = footprint(
                x,
                kernel_shape,
                resolved.window_strides,
                resolved.padding,
                algorithm,
                rhs_dilation=resolved.rhs_dilation,
                feature_group_count=resolved.feature_group_count,
            )
        except ValueError:  # not a 2-D convolution
            result[algorithm] = None
    return result


def measure(
    layer: CapturedConv,
    candidates: Sequence[str],
    repeats: int,
    warmup: int,
    on_round: Callable[[int], None] | None = None,
) -> LayerRecord:
    """Times every candidate on one captured layer and returns its record."""
    x, w = jnp.asarray(layer.lhs), jnp.asarray(layer.rhs)
    contenders: dict[str, Callable[[], jax.Array]] = {}
    out_shape: tuple[int, ...] = ()
    for algorithm in candidates:
        run = layer.run(algorithm)
        try:
            out_shape = tuple(jax.eval_shape(run, x, w).shape)
        except ValueError:  # this kernel cannot run the layer
            continue
        contenders[algorithm] = functools.partial(run, x, w)
    times = medians(
        time_interleaved(contenders, repeats=repeats, warmup=warmup, on_round=on_round)
    )
    choice = min(times, key=times.__getitem__)
    return LayerRecord(
        path=layer.path,
        choice=choice,
        input_shape=tuple(layer.lhs.shape),
        kernel_shape=tuple(layer.rhs.shape),
        output_shape=out_shape,
        window_strides=tuple(
            int(s) for s in np.broadcast_to(layer.window_strides, (layer.lhs.ndim - 2,))
        ),
        zero_fraction=float(np.mean(layer.lhs == 0)),
        times={a: times.get(a) for a in candidates},
        footprints=_footprints(layer, candidates),
    )


def measure_layers(
    layers: Sequence[CapturedConv],
    *,
    candidates: Sequence[str],
    repeats: int,
    warmup: int,
    progress: bool,
) -> Plan:
    """Measures every layer (with a progress bar on stderr if `progress`): the plan."""
    bar = ProgressBar(len(layers) * repeats, label="select", enabled=progress)
    records = []
    try:
        for layer in layers:
            records.append(
                measure(
                    layer,
                    candidates,
                    repeats,
                    warmup,
                    on_round=lambda _, path=layer.path: bar.advance(note=path),
                )
            )
    finally:
        bar.close()
    return Plan(
        records, meta={"candidates": list(candidates), "repeats": repeats, "warmup": warmup}
    )
