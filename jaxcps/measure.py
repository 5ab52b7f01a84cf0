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

from jaxcps._progress import ProgressBar
from jaxcps.algorithms import FFI_ALGORITHMS
from jaxcps.conv import conv_general_dilated
from jaxcps.footprint import footprint
from jaxcps.geometry import ResolvedConv, resolve_conv
from jaxcps.plan import LayerRecord, Plan
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

    def resolve(self) -> ResolvedConv:
        """The convolution's geometry, and the moves to and from NHWC/HWIO."""
        return resolve_conv(
            self.lhs.shape,
            self.rhs.shape,
            self.window_strides,
            self.padding,
            self.options["lhs_dilation"],
            self.options["rhs_dilation"],
            self.options["dimension_numbers"],
            self.options["feature_group_count"],
            self.options["batch_group_count"],
        )

    def run(self, algorithm: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
        """The jitted standalone conv of this layer with `algorithm`."""
        return jax.jit(self._conv(algorithm))

    def run_with_weights(self, algorithm: str, w: jax.Array) -> Callable[[jax.Array], jax.Array]:
        """The jitted standalone conv of this layer with `algorithm` and the weights `w`
        closed over (prepared once, for a kernel that takes prepared weights)."""
        conv = self._conv(algorithm)
        return jax.jit(lambda x: conv(x, w))

    def _conv(self, algorithm: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
        return functools.partial(
            conv_general_dilated,
            window_strides=self.window_strides,
            padding=self.padding,
            algorithm=algorithm,
            **self.options,
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


def _footprints(
    layer: CapturedConv, resolved: ResolvedConv, candidates: Sequence[str]
) -> dict[str, int | None]:
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
    prepared_weights: bool = False,
) -> LayerRecord:
    """Times every candidate on one captured layer and returns its record; with
    `prepared_weights`, with the weights closed over (see `jaxcps.prepared`)."""
    x, w = jnp.asarray(layer.lhs), jnp.asarray(layer.rhs)
    contenders: dict[str, Callable[[], jax.Array]] = {}
    out_shape: tuple[int, ...] = ()
    for algorithm in candidates:
        run = layer.run(algorithm)
        try:
            out_shape = tuple(jax.eval_shape(run, x, w).shape)
        except ValueError:  # this kernel cannot run the layer
            continue
        if prepared_weights:
            contenders[algorithm] = functools.partial(layer.run_with_weights(algorithm, w), x)
        else:
            contenders[algorithm] = functools.partial(run, x, w)
    times = medians(time_interleaved(contenders, repeats=repeats, warmup=warmup, on_round=on_round))
    choice = min(times, key=times.__getitem__)
    resolved = layer.resolve()
    return LayerRecord(
        path=layer.path,
        choice=choice,
        # In NHWC / HWIO, whatever the layer's own layout.
        input_shape=tuple(layer.lhs.shape[i] for i in resolved.lhs_perm),
        kernel_shape=tuple(layer.rhs.shape[i] for i in resolved.rhs_perm),
        output_shape=tuple(out_shape[i] for i in np.argsort(resolved.out_perm)),
        window_strides=tuple(resolved.window_strides),
        zero_fraction=float(np.mean(layer.lhs == 0)),
        times={a: times.get(a) for a in candidates},
        footprints=_footprints(layer, resolved, candidates),
    )


def measure_layers(
    layers: Sequence[CapturedConv],
    *,
    candidates: Sequence[str],
    repeats: int,
    warmup: int,
    progress: bool,
    prepared_weights: bool = False,
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
                    prepared_weights=prepared_weights,
                )
            )
    finally:
        bar.close()
    return Plan(
        records,
        meta={
            "candidates": list(candidates),
            "repeats": repeats,
            "warmup": warmup,
            "prepared_weights": prepared_weights,
        },
    )
