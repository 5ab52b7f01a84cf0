"""`jaxcps bench`: every algorithm against XLA's convolution on a suite of conv layers.

The protocol of DESIGN.md §5: per case (a layer at one input zero fraction) XLA's default
convolution and the jaxcps kernels im2col, MEC, CPO and CPS run in one process, jitted,
interleaved round by round after warm-up (`jaxcps.timing.time_interleaved`), reported as
medians. The timed region of CPO/CPS includes building the compressed form (it happens
inside the kernel). Each result is checked against XLA's after timing. With `--eigen`, XLA's
Eigen convolution runs in a second process (YNNPACK switched off by XLA_FLAGS) on the same
activations and joins as the contender "xla_eigen".

Derived figures, the table, JSON, CSV, markdown and plots are in `jaxcps.bench_report`; the
layers and suites in `jaxcps.bench_layers`; the activations in `jaxcps.activations`.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from jax import lax

import jaxcps
from jaxcps import bench_report
from jaxcps._targets import _ffi
from jaxcps.activations import relu_activation
from jaxcps.bench_layers import SUITES, Case, select_cases
from jaxcps.progress import ProgressBar
from jaxcps.timing import time_interleaved

#: The contenders timed together in the main process, XLA first (it is the reference).
CONTENDERS: tuple[str, ...] = ("xla", "im2col", "mec", "cpo", "cps")
#: The contender timed in the second process by `--eigen`.
EIGEN = "xla_eigen"
#: XLA_FLAGS value that takes convolutions off YNNPACK, so XLA runs them on Eigen.
EIGEN_XLA_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
#: Side of the square sgemm that measures the achievable peak.
PEAK_GEMM_SIZE = 1024
#: Runs of that sgemm per measurement; the fastest counts.
PEAK_GEMM_RUNS = 15
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


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
        report = _run_main(args, cases, eigen, Path(eigen_dir))
    paths = bench_report.write_all(report, args.out, plots=not args.no_plots)
    print(bench_report.format_table(report))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    failed = [f"{r['id']}:{a}" for r in report["cases"] for a, m in r["algorithms"].items()
              if m.get("ok") is False]
    if failed:
        print(f"FAILED verification against XLA: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _run_main(
    args: argparse.Namespace, cases: list[Case], eigen: dict | None, eigen_dir: Path
) -> dict[str, Any]:
    peak_before = measure_peak()
    bar = ProgressBar(len(cases) * (args.warmup + args.repeats), label="bench")
    records = []
    for case in cases:
        x, w = case_inputs(case, args)
        fns = _jitted_contenders(case)
        paths = {"xla": xla_conv_path(fns["xla"], x, w)}
        times = _time_case(case, fns, x, w, args, bar)
        builds = {name: build_seconds(fns[name], x, w) for name in bench_report.SPARSE}
        outputs = {name: np.asarray(fn(x, w)) for name, fn in fns.items()}
        if eigen is not None:
            times[EIGEN] = eigen["times"][case.id]
            paths[EIGEN] = eigen["xla_paths"][case.id]
            outputs[EIGEN] = np.load(eigen_dir / f"{_file_id(case)}.npy")
        records.append(bench_report.case_record(case, x, times, outputs, paths, args, builds))
    bar.close()
    peak_after = measure_peak()
    return bench_report.finish_report(
        records,
        machine=machine_info(),
        peak=combine_peaks(peak_before, peak_after),
        settings=_settings(args),
    )


def case_inputs(case: Case, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The seeded activation and He-scaled weights of `case` (equal in every process)."""
    seed = zlib.crc32(f"{case.id}/{args.seed}".encode())
    x = relu_activation(case.layer.input_shape, case.zeros, clustered=not args.uniform,
                        dead_channels=args.dead_channels, seed=seed)
    kh, kw, c, o = case.layer.kernel_shape
    rng = np.random.default_rng(seed + 1)
    w = (rng.standard_normal((kh, kw, c, o)) * np.sqrt(2.0 / (kh * kw * c))).astype(np.float32)
    return x, w


def _jitted_contenders(case: Case) -> dict[str, Callable[..., jax.Array]]:
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


def _time_case(
    case: Case,
    fns: dict[str, Callable[..., jax.Array]],
    x: np.ndarray,
    w: np.ndarray,
    args: argparse.Namespace,
    bar: ProgressBar,
) -> dict[str, list[float]]:
    xd, wd = jnp.asarray(x), jnp.asarray(w)
    bar.advance(0, case.id)
    for name, fn in fns.items():  # compile outside the timed rounds
        jax.block_until_ready(fn(xd, wd))
    bar.advance(args.warmup, case.id)
    return time_interleaved(
        {name: (lambda fn=fn: fn(xd, wd)) for name, fn in fns.items()},
        repeats=args.repeats,
        warmup=args.warmup,
        on_round=lambda _: bar.advance(1, case.id),
    )


def build_seconds(fn: Callable[..., jax.Array], x: np.ndarray, w: np.ndarray,
                  calls: int = 5) -> float:
    """Mean seconds that the CPO/CPS kernel in `fn` spends building its compressed form per
    call, timed inside the kernel on XLA's thread pool (`_ffi.build_profile`)."""
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


def measure_peak(size: int = PEAK_GEMM_SIZE, repeats: int = PEAK_GEMM_RUNS) -> dict[str, float]:
    """Achievable fp32 GFLOP/s of a size³ sgemm by XLA (jnp.dot) and by NumPy's BLAS.

    The fastest of `repeats` interleaved runs each: a peak is what the machine can reach, and
    on a shared machine the fastest run is the one least disturbed by others.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ad, bd = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    times = time_interleaved(
        {"xla_sgemm": lambda: dot(ad, bd), "numpy_sgemm": lambda: a @ b}, repeats=repeats)
    flops = 2.0 * size**3
    return {name: flops / min(ts) / 1e9 for name, ts in times.items()}


def combine_peaks(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The achievable peak (best sgemm rate, measured before and after the cases) and the
    nominal peak, with how each was derived."""
    best = {name: max(before[name], after[name]) for name in before}
    achievable = max(best.values())
    return {
        "achievable_gflops": achievable,
        "achievable_method": (
            f"GFLOP/s of the fastest of {PEAK_GEMM_RUNS} interleaved runs of a {PEAK_GEMM_SIZE}^3 "
            f"fp32 sgemm by "
            f"XLA (jnp.dot) and by NumPy's BLAS, measured before and after the cases in this run, "
            f"best of the four"
        ),
        "sgemm_gflops_before": before,
        "sgemm_gflops_after": after,
        **nominal_peak(),
    }


def nominal_peak() -> dict[str, Any]:
    """Cores × clock × fp32 FLOP per cycle per core, from /proc/cpuinfo and the CPU family."""
    cores = len(os.sched_getaffinity(0))
    mhz, vendor, family, flags = _cpuinfo()
    per_cycle, why = _flops_per_cycle(vendor, family, flags)
    return {
        "nominal_gflops": cores * mhz / 1e3 * per_cycle if mhz else None,
        "nominal_method": (
            f"{cores} cores x {mhz:.0f} MHz (cpuinfo 'cpu MHz', nominal, no boost) x "
            f"{per_cycle} fp32 FLOP/cycle/core ({why})"
        ),
    }


def _cpuinfo() -> tuple[float, str, int, set[str]]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return (float(fields.get("cpu MHz", 0) or 0), fields.get("vendor_id", ""),
            int(fields.get("cpu family", 0) or 0), set(fields.get("flags", "").split()))


def _flops_per_cycle(vendor: str, family: int, flags: set[str]) -> tuple[int, str]:
    if vendor == "AuthenticAMD" and family == 0x19 and "avx512f" in flags:
        return 32, "AMD Zen 4: 2 FMA pipes, 256 bits wide, AVX-512 runs double-pumped"
    if vendor == "AuthenticAMD" and family >= 0x1A and "avx512f" in flags:
        return 64, "AMD Zen 5: 2 FMA pipes, 512 bits wide (assumed)"
    if "avx512f" in flags:
        return 64, "AVX-512: assumes 2 FMA units of 512 bits (server cores; some have 1)"
    if "fma" in flags:
        return 32, "AVX2: assumes 2 FMA units of 256 bits"
    return 8, "SSE: assumes 1 add + 1 mul of 128 bits"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU, threads, versions, commit, date, ISA."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_mhz": _cpuinfo()[0],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": len(os.sched_getaffinity(0)),
        "threads_note": "CPUs available to this process; XLA's intra-op pool (which the "
        "jaxcps kernels use) has one thread per CPU",
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "jaxcps": jaxcps.__version__,
        "git_commit": _git_commit(),
        "isa": _ffi.active_isa(),
        "supported_isas": list(_ffi.supported_isas()),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    """HEAD of the repository jaxcps runs from, "+dirty" if it has changes; "unknown"."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


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
        x, w = case_inputs(case, args)
        fns = {EIGEN: _jitted_contenders(case)["xla"]}
        result["xla_paths"][case.id] = xla_conv_path(fns[EIGEN], x, w)
        result["times"][case.id] = _time_case(case, fns, x, w, args, bar)[EIGEN]
        np.save(args.eigen_worker / f"{_file_id(case)}.npy", np.asarray(fns[EIGEN](x, w)))
    bar.close()
    (args.eigen_worker / "eigen.json").write_text(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m jaxcps.bench`: the same as `jaxcps bench` (the `--eigen` child runs this)."""
    parser = argparse.ArgumentParser(prog="jaxcps bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
