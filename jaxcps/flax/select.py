"""`select(fn, *args)`: the paper's offline per-layer selection on real activations.

Two steps: `fn(*args)` runs once, eagerly, with every Flax conv swapped for a recorder that
keeps the first input activation, weights and arguments of each layer (by module path) and
then computes with XLA; each recorded layer is then timed alone with every candidate
(`jax.jit`, warmed up, interleaved rounds, median: `jaxcps.timing`), and the fastest wins.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcps._progress import ProgressBar
from jaxcps.algorithms import FFI_ALGORITHMS
from jaxcps.conv import conv_general_dilated
from jaxcps.flax._hooks import swap_convs
from jaxcps.footprint import footprint
from jaxcps.geometry import resolve_conv
from jaxcps.plan import LayerRecord, Plan
from jaxcps.timing import medians, time_interleaved

#: Candidates `select` times by default: every algorithm except "auto".
DEFAULT_CANDIDATES: tuple[str, ...] = ("xla", *FFI_ALGORITHMS)


@dataclasses.dataclass
class CapturedConv:
    """One conv layer's call as Flax made it: operands and `conv_general_dilated` arguments."""

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


def _recorder(store: dict[str, CapturedConv], path: str) -> Callable[..., jax.Array]:
    def record(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=None,
        rhs_dilation=None,
        dimension_numbers=None,
        feature_group_count=1,
        batch_group_count=1,
        precision=None,
        preferred_element_type=None,
        **unused,
    ):
        options = dict(
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
        if path not in store:
            try:
                operands = np.asarray(lhs), np.asarray(rhs)
            except jax.errors.TracerArrayConversionError:
                raise ValueError(
                    f"select needs concrete activations, but layer {path!r} was traced: pass "
                    f"fn without jax.jit/nnx.jit (selection jits each layer itself)"
                ) from None
            store[path] = CapturedConv(path, *operands, window_strides, padding, options)
        return conv_general_dilated(lhs, rhs, window_strides, padding, algorithm="xla", **options)

    return record


def capture(
    fn: Callable[..., Any], *args: Any, models: Sequence[nnx.Module] = ()
) -> list[CapturedConv]:
    """Runs `fn(*args)` once and returns every conv layer's first call, in execution order.

    Linen convs are found by interception; NNX convs inside `fn` (if it is an NNX module),
    inside `args`, and inside `models`.
    """
    nnx_models = [m for m in (fn, *args, *models) if isinstance(m, nnx.Module)]
    store: dict[str, CapturedConv] = {}
    with swap_convs(lambda path, module: _recorder(store, path), nnx_models):
        jax.block_until_ready(fn(*args))
    return list(store.values())


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


def select(
    fn: Callable[..., Any],
    *args: Any,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    repeats: int = 7,
    warmup: int = 2,
    models: Sequence[nnx.Module] = (),
    progress: bool = True,
) -> Plan:
    """Measures the fastest algorithm for every conv layer of a Flax model: a `jaxcps.Plan`.

    `fn(*args)` runs once, eagerly, to capture each conv layer's real input activation,
    weights and arguments. Each layer is then timed alone with every candidate (jitted,
    `warmup` untimed rounds, `repeats` interleaved rounds, median), and the fastest is
    chosen. Candidates that cannot run a layer are recorded with time None. A layer called
    several times (shared weights) is measured on its first call.

    Example usage::

      >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxcps.flax
      >>> model = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Conv(8, (3, 3))])
      >>> x = jax.random.normal(jax.random.key(0), (1, 16, 16, 3))
      >>> variables = model.init(jax.random.key(1), x)
      >>> plan = jaxcps.flax.select(lambda x: model.apply(variables, x), x,
      ...                           candidates=("xla", "cpo"), repeats=3, progress=False)
      >>> sorted(plan)
      ['layers_0', 'layers_2']
      >>> with jaxcps.flax.route(plan):
      ...   y = jax.jit(model.apply)(variables, x)

    Args:
      fn: runs a Flax model: `lambda x: model.apply(variables, x)` for linen, an NNX module,
        or any function calling one. Must not be jitted (activations must be concrete).
      *args: the sample inputs passed to `fn`.
      candidates: algorithms to time, from "xla", "im2col", "mec", "cpo", "cps" (default:
        all five).
      repeats: timed rounds per layer; the median is kept (default: 7).
      warmup: untimed rounds per layer before timing (default: 2).
      models: NNX modules that `fn` uses but that are neither `fn` nor in `args`
        (default: ()).
      progress: draw a progress bar on stderr (default: True).

    Returns:
      A `jaxcps.Plan` with one record per conv layer, in execution order.

    Raises:
      ValueError: for an unknown or "auto" candidate, `repeats` < 1, no conv layer found,
        or a jitted `fn`.
    """
    bad = [c for c in candidates if c not in DEFAULT_CANDIDATES]
    if bad or not candidates:
        raise ValueError(
            f"candidates must be a non-empty selection of {DEFAULT_CANDIDATES}, got "
            f"{tuple(candidates)!r}"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    layers = capture(fn, *args, models=models)
    if not layers:
        raise ValueError(
            "no Flax conv layer ran in fn(*args); for NNX, pass the model as fn, in args, "
            "or with models="
        )
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
        records, meta=dict(candidates=list(candidates), repeats=repeats, warmup=warmup)
    )
