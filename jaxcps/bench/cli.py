"""`jaxcps bench`: every algorithm against XLA's convolution on a suite of conv layers.

Per case (a layer at one input zero fraction) XLA's default convolution and every jaxcps
kernel run in one process, jitted, interleaved round by round after warm-up, reported as
medians (`jaxcps.bench.harness`). Each result is checked against XLA's after timing. With
`--eigen`, XLA's Eigen convolution runs in a second process (YNNPACK switched off by
XLA_FLAGS) on the same activations and joins as the contender "xla_eigen".

Derived figures, the table, JSON, CSV, markdown and plots are in `jaxcps.bench.report`; the
layers and suites in `jaxcps.bench.layers`; the activations in `jaxcps.bench.activations`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcps._progress import ProgressBar
from jaxcps.bench import harness, machine, report
from jaxcps.bench.layers import SUITES, Case, select_cases

#: The contender timed in the second process by `--eigen`.
EIGEN = "xla_eigen"
#: XLA_FLAGS value that takes convolutions off YNNPACK, so XLA runs them on Eigen.
EIGEN_XLA_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `jaxcps bench` to `parser`."""
    parser.add_argument("--suite", choices=SUITES, default="quick",
                        help="layer suite (default: quick; smoke = 2 tiny layers for tests)")
    parser.add_argument("--layers", nargs="+", metavar="PATTERN",
                        help="only layers whose id matches a glob or contains a substring, "
                        "e.g. 'vgg16/conv5_*' resnet50")
    parser.add_argument("--zeros", nargs="+", type=float, metavar="FRACTION",
                        help="run every selected layer at these zero fractions instead of "
                        "the suite's")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed rounds per case; the median is reported (default: 7, the "
                        "protocol's minimum)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (default: 2)")
    parser.add_argument("--out", type=Path, default=Path("jaxcps-bench"),
                        help="output directory (default: jaxcps-bench/)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--uniform", action="store_true",
                        help="iid (uniformly placed) zeros instead of spatial clusters: the "
                        "worst case for CPS")
    parser.add_argument("--dead-channels", type=float, default=0.0, metavar="FRACTION",
                        help="fraction of input channels that are all zero (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of activations and weights")
    parser.add_argument("--eigen", action="store_true",
                        help="also time XLA's Eigen convolution in a second process")
    parser.add_argument("--eigen-worker", type=Path, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns 0, or 1 if a result disagreed with XLA's."""
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    if not args.no_plots and importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("plots need matplotlib: pip install 'jaxcps[bench]', or pass --no-plots")
    cases = select_cases(args.suite, args.layers, args.zeros)
    if args.eigen_worker is not None:
        return _run_eigen_worker(args, cases)
    with tempfile.TemporaryDirectory(prefix="jaxcps-eigen-") as eigen_dir:
        eigen = _spawn_eigen_worker(args, Path(eigen_dir)) if args.eigen else None
        result = _run_main(args, cases, eigen, Path(eigen_dir))
    paths = report.write_all(result, args.out, plots=not args.no_plots)
    print(report.format_table(result))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    failed = [f"{r['id']}:{a}" for r in result["cases"] for a, m in r["algorithms"].items()
              if m.get("ok") is False]
    if failed:
        print(f"FAILED verification against XLA: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _inputs(case: Case, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    return harness.case_inputs(case, seed=args.seed, uniform=args.uniform,
                               dead_channels=args.dead_channels)


def _time(case: Case, fns: dict[str, Callable[..., jax.Array]], x: np.ndarray, w: np.ndarray,
          args: argparse.Namespace, bar: ProgressBar) -> dict[str, list[float]]:
    return harness.time_case(case, fns, x, w, repeats=args.repeats, warmup=args.warmup, bar=bar)


def _run_main(
    args: argparse.Namespace, cases: list[Case], eigen: dict | None, eigen_dir: Path
) -> dict[str, Any]:
    peak_before = machine.measure_peak()
    bar = ProgressBar(len(cases) * (args.warmup + args.repeats), label="bench")
    records = []
    for case in cases:
        x, w = _inputs(case, args)
        fns = harness.jitted_contenders(case)
        paths = {"xla": harness.xla_conv_path(fns["xla"], x, w)}
        times = _time(case, fns, x, w, args, bar)
        builds = {name: harness.build_seconds(fns[name], x, w) for name in report.SPARSE}
        outputs = {name: np.asarray(fn(x, w)) for name, fn in fns.items()}
        if eigen is not None:
            times[EIGEN] = eigen["times"][case.id]
            paths[EIGEN] = eigen["xla_paths"][case.id]
            outputs[EIGEN] = np.load(eigen_dir / f"{_file_id(case)}.npy")
        records.append(report.case_record(case, x, times, outputs, paths,
                                          uniform=args.uniform, build_seconds=builds))
    bar.close()
    peak_after = machine.measure_peak()
    return report.finish_report(
        records,
        machine=machine.machine_info(),
        peak=machine.combine_peaks(peak_before, peak_after),
        settings=_settings(args),
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "suite": args.suite,
        "layers": args.layers,
        "zeros": args.zeros,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "zeros_placement": "uniform (iid)" if args.uniform else "clustered",
        "dead_channels": args.dead_channels,
        "seed": args.seed,
        "eigen": args.eigen,
        "command": " ".join(["jaxcps bench", *_forwarded_args(args), "--out", str(args.out)]
                            + (["--eigen"] if args.eigen else [])),
    }


def _file_id(case: Case) -> str:
    return case.id.replace("/", "_")


def _forwarded_args(args: argparse.Namespace) -> list[str]:
    """The options that fix the cases and their inputs, as command-line words."""
    words = ["--suite", args.suite, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
             "--seed", str(args.seed), "--dead-channels", str(args.dead_channels)]
    if args.layers:
        words += ["--layers", *args.layers]
    if args.zeros:
        words += ["--zeros", *(str(z) for z in args.zeros)]
    if args.uniform:
        words.append("--uniform")
    return words


def _spawn_eigen_worker(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Runs the cases on XLA's Eigen path in a child process; returns its times and path."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + EIGEN_XLA_FLAG).strip()
    command = [sys.executable, "-m", "jaxcps.bench", *_forwarded_args(args),
               "--eigen-worker", str(workdir)]
    subprocess.run(command, env=env, check=True)
    return json.loads((workdir / "eigen.json").read_text())


def _run_eigen_worker(args: argparse.Namespace, cases: list[Case]) -> int:
    """Child of `--eigen`: times XLA's conv alone per case, saves times, outputs and path."""
    bar = ProgressBar(len(cases) * (args.warmup + args.repeats), label=EIGEN)
    result: dict[str, Any] = {"times": {}, "xla_paths": {}}
    for case in cases:
        x, w = _inputs(case, args)
        fns = {EIGEN: harness.jitted_contenders(case)["xla"]}
        result["xla_paths"][case.id] = harness.xla_conv_path(fns[EIGEN], x, w)
        result["times"][case.id] = _time(case, fns, x, w, args, bar)[EIGEN]
        np.save(args.eigen_worker / f"{_file_id(case)}.npy", np.asarray(fns[EIGEN](x, w)))
    bar.close()
    (args.eigen_worker / "eigen.json").write_text(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m jaxcps.bench`: the same as `jaxcps bench`."""
    parser = argparse.ArgumentParser(prog="jaxcps bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
