"""`jaxcps demo`: offline selection and plan-routed inference on a calibrated Flax CNN.

Builds a VGG-16-, ResNet-18- or ResNet-50-style linen model, calibrates its biases so the conv
inputs follow a sparsity profile, selects the fastest algorithm per layer
(`jaxcps.flax.select`), prints the per-layer table, times jitted end-to-end inference all-XLA
against the plan (interleaved medians), checks that both give the same outputs, and writes
plan.json, summary.json and PNG plots into the output folder. When onnxruntime (and onnx) are
installed, the same network with the same weights runs in ONNX Runtime too
(`jaxcps.demo.onnx_models`), timed in the same rounds on an input converted to NCHW
beforehand, its output checked against the Flax model's.

Flax is imported when the demo runs, not with this module: the `jaxcps` command imports
every subcommand's module, and Flax is an optional dependency.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxcps.bench import peers
from jaxcps.plan import Plan
from jaxcps.timing import medians, time_interleaved

#: Model name (a key of `jaxcps.demo.models.MODELS`) -> smallest image it accepts (all halve
#: the size five times).
MIN_IMAGE_SIZE = {"vgg16": 32, "resnet18": 32, "resnet50": 32}
#: `jaxcps.demo.models.PROFILES`, repeated here so that the options need no Flax.
PROFILES = ("rising", "inception", "moderate")
#: Relative tolerance of the parity check, on the output scale.
PARITY_RTOL = 1e-3


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the demo's options to `parser`."""
    parser.add_argument(
        "--model", choices=sorted(MIN_IMAGE_SIZE), default="vgg16", help="network (default: vgg16)"
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="rising",
        help="zero fraction of the conv inputs by depth (default: rising)",
    )
    parser.add_argument(
        "--image-size",
        type=_positive_int,
        default=112,
        help="height and width of the input image, at least 32 (default: 112)",
    )
    parser.add_argument(
        "--width",
        type=_positive_float,
        default=1.0,
        help="multiplier on every channel count (default: 1.0)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        default=5,
        help="timed rounds per layer in selection; end-to-end uses 4x (default: 5)",
    )
    parser.add_argument(
        "--out",
        default="jaxcps-demo",
        help="output folder, created if missing (default: ./jaxcps-demo)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _check(args: argparse.Namespace) -> str | None:
    """The first problem with the options, or None."""
    if args.image_size < MIN_IMAGE_SIZE[args.model]:
        return (
            f"--image-size must be at least {MIN_IMAGE_SIZE[args.model]} for "
            f"--model {args.model}, got {args.image_size}"
        )
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        return f"--out {args.out!r} exists and is not a folder"
    return None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Runs the demo; returns the exit status (0 when the plan's outputs match XLA's)."""
    problem = _check(args)
    if problem is not None:
        print(f"jaxcps demo: error: {problem}", file=sys.stderr)
        return 2
    try:
        from jaxcps.demo import models
        from jaxcps.flax import select
    except ImportError as error:
        print(
            f"jaxcps demo: error: the demo needs Flax (pip install 'jaxcps[flax]'): {error}",
            file=sys.stderr,
        )
        return 2
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    model = models.MODELS[args.model][0](width=args.width)
    key_x, key_p = jax.random.split(jax.random.key(args.seed, impl="rbg"))
    x = jax.random.uniform(key_x, (1, args.image_size, args.image_size, 3))
    _log(
        f"building {args.model} (width {args.width}) at {args.image_size}x{args.image_size}, "
        f"calibrating biases to the {args.profile!r} profile ..."
    )
    variables = models.calibrate_linen(model, model.init(key_p, x), x, args.profile)

    # Weights prepared, as the end-to-end programs below hold them.
    plan = select(
        lambda x: model.apply(variables, x), x, repeats=args.repeats, prepared_weights=True
    )
    print(plan)

    onnxruntime = _onnxruntime(args.model, variables, x)
    e2e = _end_to_end(model, variables, x, plan, onnxruntime, repeats=4 * args.repeats)
    plan.meta.update(
        model=args.model, profile=args.profile, image_size=args.image_size, width=args.width
    )
    plan.save(os.path.join(args.out, "plan.json"))
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump({**plan.meta, **e2e}, f, indent=1)
    plots = _plots(plan, e2e, args.out)

    print()
    print(_summary(e2e))
    written = ["plan.json", "summary.json", *plots]
    print(
        f"wrote {', '.join(written)} to {os.path.abspath(args.out)} "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 0 if e2e["parity"] and e2e["onnxruntime_parity"] is not False else 1


@dataclasses.dataclass(frozen=True)
class _OnnxRuntime:
    """The model in ONNX Runtime, on its input already in NCHW.

    Attributes:
      run: the call to time, returning [logits]; None when onnxruntime or onnx is missing.
      note: what runs, or why nothing does.
    """

    run: Callable[[], list[np.ndarray]] | None
    note: str


def _onnxruntime(model: str, variables: Any, x: jax.Array) -> _OnnxRuntime:
    reason = peers.missing_package("onnxruntime")
    if reason is not None:
        return _OnnxRuntime(None, f"{reason} (pip install 'jaxcps[peers]')")
    from jaxcps.demo.onnx_models import to_onnx

    threads = len(os.sched_getaffinity(0))
    session = peers.onnxruntime_session(to_onnx(model, variables["params"], x.shape), threads)
    x_nchw = np.ascontiguousarray(np.transpose(np.asarray(x), (0, 3, 1, 2)))
    version = peers._import("onnxruntime").__version__
    return _OnnxRuntime(
        functools.partial(session.run, None, {"x": x_nchw}),
        f"onnxruntime {version}, {threads} threads, NCHW input",
    )


def _end_to_end(
    model: Any, variables: Any, x: jax.Array, plan: Plan, onnxruntime: _OnnxRuntime, repeats: int
) -> dict[str, Any]:
    """Jitted all-XLA vs plan-routed inference (and ONNX Runtime when it is available):
    interleaved medians and the parity checks against all-XLA."""
    from jaxcps.flax import route

    # The weights closed over, constants of the compiled programs as ONNX Runtime's are of its
    # session: kernels that take prepared weights pack them once, at trace time.
    xla_fn = jax.jit(lambda x: model.apply(variables, x))
    plan_fn = jax.jit(lambda x: model.apply(variables, x))
    y_xla = np.asarray(xla_fn(x))
    with route(plan):  # traced here, so the compiled function keeps the plan
        y_plan = np.asarray(plan_fn(x))
    contenders: dict[str, Callable[[], object]] = {
        "xla": lambda: xla_fn(x),
        "plan": lambda: plan_fn(x),
    }
    if onnxruntime.run is not None:
        contenders["onnxruntime"] = onnxruntime.run
    times = medians(time_interleaved(contenders, repeats=repeats))
    scale = float(np.max(np.abs(y_xla)))
    diff = float(np.max(np.abs(y_plan - y_xla)))
    result = {
        "xla_ms": times["xla"] * 1e3,
        "plan_ms": times["plan"] * 1e3,
        "speedup": times["xla"] / times["plan"],
        "repeats": repeats,
        "max_abs_diff": diff,
        "output_scale": scale,
        "parity": _close(diff, scale),
        "onnxruntime": onnxruntime.note,
        "onnxruntime_ms": None,
        "speedup_vs_onnxruntime": None,
        "onnxruntime_max_abs_diff": None,
        "onnxruntime_parity": None,
    }
    if onnxruntime.run is not None:
        ort_diff = float(np.max(np.abs(onnxruntime.run()[0] - y_xla)))
        result.update(
            onnxruntime_ms=times["onnxruntime"] * 1e3,
            speedup_vs_onnxruntime=times["onnxruntime"] / times["plan"],
            onnxruntime_max_abs_diff=ort_diff,
            onnxruntime_parity=_close(ort_diff, scale),
        )
    return result


def _close(diff: float, scale: float) -> bool:
    return bool(diff <= PARITY_RTOL * max(scale, 1e-6))


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISMATCH"


def _summary(e2e: dict[str, Any]) -> str:
    """The end-to-end lines the demo prints."""
    times = f"all-XLA {e2e['xla_ms']:.2f} ms, plan {e2e['plan_ms']:.2f} ms"
    speedups = f"{e2e['speedup']:.2f}x over all-XLA"
    if e2e["onnxruntime_ms"] is not None:
        times += f", ONNX Runtime {e2e['onnxruntime_ms']:.2f} ms"
        speedups += f", {e2e['speedup_vs_onnxruntime']:.2f}x over ONNX Runtime"
    lines = [
        f"end-to-end, jitted, batch 1 (median of {e2e['repeats']} interleaved runs): {times}",
        f"plan: {speedups}",
        (
            f"parity: max |plan - xla| = {e2e['max_abs_diff']:.2e} (output scale "
            f"{e2e['output_scale']:.2e}): {_verdict(e2e['parity'])}"
        ),
    ]
    if e2e["onnxruntime_parity"] is None:
        lines.append(f"ONNX Runtime not run: {e2e['onnxruntime']}")
    else:
        lines.append(
            f"parity: max |ONNX Runtime - xla| = {e2e['onnxruntime_max_abs_diff']:.2e} "
            f"({e2e['onnxruntime']}): {_verdict(e2e['onnxruntime_parity'])}"
        )
    return "\n".join(lines)


def _plots(plan: Plan, e2e: dict[str, Any], out: str) -> list[str]:
    """Writes the demo's plots into `out`; returns their file names (none, with a note, if
    matplotlib is missing)."""
    try:
        from jaxcps.demo import plots
    except ImportError:
        _log("matplotlib is not installed: no plots (pip install 'jaxcps[demo]')")
        return []
    return plots.plot_all(plan, e2e, out)
