"""`jaxcps bench`: every algorithm against XLA's convolution on a suite of conv layers.

Per case (a layer at one input zero fraction and batch size) XLA's default convolution and
every jaxcps kernel run in one process, jitted, interleaved round by round after warm-up,
reported as medians (`jaxcps.bench.harness`). With `--peers`, the dense convolutions of ONNX
Runtime, OpenVINO and oneDNN (through PyTorch) that are installed join the same rounds
(`jaxcps.bench.peers`), with as many threads as XLA's pool; with `--synchronous` JAX runs its
calls on the calling thread too, as those engines run theirs (`jaxcps.timing.jax_dispatch`).
Each result is checked against XLA's after timing. With `--eigen`, XLA's Eigen convolution
runs in a second process (YNNPACK switched off by XLA_FLAGS) on the same activations and joins
as the contender "xla_eigen".

Derived figures, JSON and CSV are in `jaxcps.bench.report`, the table and markdown in
`jaxcps.bench.tables`, the plots in `jaxcps.bench.plots`; the layers and suites in
`jaxcps.bench.layers`; the activations in `jaxcps.bench.activations`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxcps._progress import ProgressBar
from jaxcps.bench import harness, machine, peers, report, stability, tables
from jaxcps.bench.layers import SUITES, Case, select_cases
from jaxcps.timing import jax_dispatch

#: The contender timed in the second process by `--eigen`.
EIGEN = "xla_eigen"
#: XLA_FLAGS value that takes convolutions off YNNPACK, so XLA runs them on Eigen.
EIGEN_XLA_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `jaxcps bench` to `parser`."""
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="quick",
        help="layer suite (default: quick; peers = the layers compared with "
        "the dense engines, peers-holdout = other shapes; smoke = 2 tiny "
        "layers for tests)",
    )
    parser.add_argument(
        "--layers",
        nargs="+",
        metavar="PATTERN",
        help="only layers whose id matches a glob or contains a substring, "
        "e.g. 'vgg16/conv5_*' resnet50",
    )
    parser.add_argument(
        "--zeros",
        nargs="+",
        type=float,
        metavar="FRACTION",
        help="run every selected layer at these zero fractions instead of the suite's",
    )
    parser.add_argument(
        "--batch",
        nargs="+",
        type=int,
        metavar="N",
        help="run every selected layer at these batch sizes instead of the "
        "suite's (1, or 1 and 8 in the peers suites)",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also time the dense convolution of ONNX Runtime, OpenVINO and "
        "oneDNN (through PyTorch), those installed (pip install "
        "'jaxcps[peers]'; PyTorch is used when importable)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="timed rounds per case; the median is reported (default: 7, the protocol's minimum)",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (default: 2)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("jaxcps-bench"),
        help="output directory (default: jaxcps-bench/)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--peak-size",
        type=int,
        default=machine.PEAK_GEMM_SIZE,
        metavar="N",
        help="side of the square sgemm that measures the achievable peak "
        f"(default: {machine.PEAK_GEMM_SIZE})",
    )
    parser.add_argument(
        "--uniform",
        action="store_true",
        help="iid (uniformly placed) zeros instead of spatial clusters: the worst case for CPS",
    )
    parser.add_argument(
        "--dead-channels",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="fraction of input channels that are all zero (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of activations and weights")
    parser.add_argument(
        "--constant-weights",
        action="store_true",
        help="close every jitted contender over its weights, as a model's parameters for "
        "inference: sparse_direct then packs them once, as the dense engines do theirs "
        "(default: weights are arguments, packed on every call)",
    )
    parser.add_argument(
        "--synchronous",
        action="store_true",
        help="run JAX's calls on the calling thread, as the dense engines run theirs (default: "
        "JAX's asynchronous dispatch, which adds a hand-off to XLA's thread to every call)",
    )
    parser.add_argument(
        "--eigen", action="store_true", help="also time XLA's Eigen convolution in a second process"
    )
    parser.add_argument("--eigen-worker", type=Path, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns 0, or 1 if a result disagreed with XLA's."""
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    if args.peak_size < 1:
        raise SystemExit(f"--peak-size must be >= 1, got {args.peak_size}")
    if not args.no_plots and importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("plots need matplotlib: pip install 'jaxcps[bench]', or pass --no-plots")
    try:
        cases = select_cases(args.suite, args.layers, args.zeros, args.batch)
    except ValueError as error:
        raise SystemExit(f"jaxcps bench: {error}") from None
    dispatch = jax_dispatch(synchronous=args.synchronous)  # before any JAX computation
    if args.synchronous and dispatch != "synchronous":
        print("jaxcps bench: JAX had started, so its dispatch stays asynchronous", file=sys.stderr)
    args.synchronous = dispatch == "synchronous"  # what is recorded and given the Eigen worker
    if args.eigen_worker is not None:
        return _run_eigen_worker(args, cases)
    engines = _peer_engines() if args.peers else None
    with tempfile.TemporaryDirectory(prefix="jaxcps-eigen-") as eigen_dir:
        eigen = _spawn_eigen_worker(args, Path(eigen_dir)) if args.eigen else None
        result = _run_main(args, cases, engines, eigen, Path(eigen_dir))
    paths = write_all(result, args.out, plots=not args.no_plots)
    print(tables.format_table(result))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    for reason in stability.disturbed(result):
        print(f"jaxcps bench: the machine was disturbed: {reason}", file=sys.stderr)
    failed = [
        f"{r['id']}:{a}"
        for r in result["cases"]
        for a, m in r["algorithms"].items()
        if m.get("ok") is False
    ]
    if failed:
        print(f"FAILED verification against XLA: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def write_all(result: dict[str, Any], out: Path, *, plots: bool = True) -> list[Path]:
    """Writes bench.json, bench.csv, results.md and (if `plots`) the PNGs into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        report.write_json(result, out / "bench.json"),
        report.write_csv(result, out / "bench.csv"),
    ]
    images = []
    if plots:
        from jaxcps.bench import plots as plotting  # matplotlib only when plotting

        images = plotting.plot_all(result, out)
    paths.append(tables.write_markdown(result, out / "results.md", images))
    return paths + images


@dataclasses.dataclass(frozen=True)
class _Engines:
    """The `--peers` engines that can run here, why the others cannot, and their threads."""

    names: tuple[str, ...]
    unavailable: dict[str, str]
    threads: int


def _peer_engines() -> _Engines:
    """The `--peers` engines; sets the environment they read when they load (before any is
    imported)."""
    peers.configure_environment()
    reasons = peers.available_engines()
    unavailable = {name: why for name, why in reasons.items() if why is not None}
    for name, why in unavailable.items():
        print(f"jaxcps bench --peers: {name} is not available: {why}", file=sys.stderr)
    if len(unavailable) == len(reasons):
        raise SystemExit(
            "jaxcps bench --peers: no dense engine is available; pip install 'jaxcps[peers]'"
        )
    return _Engines(
        names=tuple(name for name in reasons if name not in unavailable),
        unavailable=unavailable,
        threads=len(os.sched_getaffinity(0)),
    )


def _inputs(case: Case, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    return harness.case_inputs(
        case, seed=args.seed, uniform=args.uniform, dead_channels=args.dead_channels
    )


def _run_main(
    args: argparse.Namespace,
    cases: list[Case],
    engines: _Engines | None,
    eigen: dict | None,
    eigen_dir: Path,
) -> dict[str, Any]:
    peak_before = machine.measure_peak(args.peak_size)
    bar = ProgressBar(len(cases) * (args.warmup + args.repeats), label="bench")
    records = []
    descriptions: dict[str, str] = {}
    for case in cases:
        x, w = _inputs(case, args)
        fns = harness.jitted_contenders(case, w if args.constant_weights else None)
        dense = harness.dense_engines(case, w, engines.names, engines.threads) if engines else {}
        descriptions.update({name: conv.description for name, conv in dense.items()})
        paths = {"xla": harness.xla_conv_path(fns["xla"], x, w)}
        times, build_times = harness.time_case(
            case, fns, x, w, engines=dense, repeats=args.repeats, warmup=args.warmup, bar=bar
        )
        builds = {
            name: statistics.median(ts) for name, ts in build_times.items() if name in report.SPARSE
        }
        outputs = harness.outputs(fns, dense, x, w)
        if eigen is not None:
            times[EIGEN] = eigen["times"][case.id]
            paths[EIGEN] = eigen["xla_paths"][case.id]
            outputs[EIGEN] = np.load(eigen_dir / f"{_file_id(case)}.npy")
        records.append(
            report.case_record(
                case, x, times, outputs, paths, uniform=args.uniform, build_seconds=builds
            )
        )
    bar.close()
    peak_after = machine.measure_peak(args.peak_size)
    settings = _settings(args)
    if engines:
        settings["peers"] = {
            "engines": descriptions,
            "unavailable": engines.unavailable,
            "threads": engines.threads,
        }
    return report.finish_report(
        records,
        machine=machine.machine_info(),
        peak=machine.combine_peaks(peak_before, peak_after, args.peak_size),
        settings=settings,
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "suite": args.suite,
        "layers": args.layers,
        "zeros": args.zeros,
        "batch": args.batch,
        "peers": None,
        "peak_size": args.peak_size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "zeros_placement": "uniform (iid)" if args.uniform else "clustered",
        "dead_channels": args.dead_channels,
        "seed": args.seed,
        "constant_weights": args.constant_weights,
        "eigen": args.eigen,
        "jax_dispatch": "synchronous" if args.synchronous else "asynchronous",
        "command": " ".join(
            [
                "jaxcps bench",
                *_forwarded_args(args),
                "--out",
                str(args.out),
                "--peak-size",
                str(args.peak_size),
            ]
            + (["--eigen"] if args.eigen else [])
            + (["--peers"] if args.peers else [])
        ),
    }


def _file_id(case: Case) -> str:
    return case.id.replace("/", "_")


def _forwarded_args(args: argparse.Namespace) -> list[str]:
    """The options that the `--eigen` worker shares with the main process, as command-line
    words (also recorded as the run's command)."""
    words = [
        "--suite",
        args.suite,
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--seed",
        str(args.seed),
        "--dead-channels",
        str(args.dead_channels),
    ]
    if args.layers:
        words += ["--layers", *args.layers]
    if args.zeros:
        words += ["--zeros", *(str(z) for z in args.zeros)]
    if args.batch:
        words += ["--batch", *(str(b) for b in args.batch)]
    if args.uniform:
        words.append("--uniform")
    if args.constant_weights:
        words.append("--constant-weights")
    if args.synchronous:
        words.append("--synchronous")
    return words


def _spawn_eigen_worker(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Runs the cases on XLA's Eigen path in a child process; returns its times and path."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + EIGEN_XLA_FLAG).strip()
    command = [
        sys.executable,
        "-m",
        "jaxcps.bench",
        *_forwarded_args(args),
        "--eigen-worker",
        str(workdir),
    ]
    subprocess.run(command, env=env, check=True)
    return json.loads((workdir / "eigen.json").read_text())


def _run_eigen_worker(args: argparse.Namespace, cases: list[Case]) -> int:
    """Child of `--eigen`: times XLA's conv alone per case, saves times, outputs and path."""
    bar = ProgressBar(len(cases) * (args.warmup + args.repeats), label=EIGEN)
    result: dict[str, Any] = {"times": {}, "xla_paths": {}}
    for case in cases:
        x, w = _inputs(case, args)
        fns = {EIGEN: harness.jitted_contenders(case, w if args.constant_weights else None)["xla"]}
        result["xla_paths"][case.id] = harness.xla_conv_path(fns[EIGEN], x, w)
        result["times"][case.id] = harness.time_case(
            case, fns, x, w, repeats=args.repeats, warmup=args.warmup, bar=bar
        ).times[EIGEN]
        np.save(args.eigen_worker / f"{_file_id(case)}.npy", np.asarray(fns[EIGEN](x, w)))
    bar.close()
    (args.eigen_worker / "eigen.json").write_text(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m jaxcps.bench`: the same as `jaxcps bench`."""
    parser = argparse.ArgumentParser(prog="jaxcps bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
