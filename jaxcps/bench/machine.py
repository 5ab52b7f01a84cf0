"""What benchmark numbers were measured on: the machine, the versions, the commit, and the
peak they are compared with (an sgemm measured in the same run, and the nominal peak)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

import jaxcps
from jaxcps.timing import time_interleaved

#: Side of the square sgemm that measures the achievable peak: large enough that packing and
#: splitting the work over the threads are a small part of its time.
PEAK_GEMM_SIZE = 2048
#: Runs of that sgemm per measurement; the fastest counts.
PEAK_GEMM_RUNS = 9


def measure_peak(size: int = PEAK_GEMM_SIZE, repeats: int = PEAK_GEMM_RUNS) -> dict[str, float]:
    """Achievable fp32 GFLOP/s of a size³ sgemm by XLA (jnp.dot) and by NumPy's BLAS.

    The fastest of `repeats` interleaved runs each: a peak is what the machine can reach, and
    on a shared machine the fastest run is the one least disturbed by others. Both use every
    CPU this process may run on.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ad, bd = jnp.asarray(a), jnp.asarray(b)
    dot = jax.jit(jnp.dot)
    times = time_interleaved(
        {"xla_sgemm": lambda: dot(ad, bd), "numpy_sgemm": lambda: a @ b}, repeats=repeats
    )
    flops = 2.0 * size**3
    return {name: flops / min(ts) / 1e9 for name, ts in times.items()}


def combine_peaks(
    before: dict[str, float], after: dict[str, float], size: int = PEAK_GEMM_SIZE
) -> dict[str, Any]:
    """The sgemm rate (best of the `size`³ sgemms measured before and after the cases) and
    the nominal peak, with how each was derived.

    `jaxcps.bench.report.finish_report` turns the sgemm rate into the achievable peak.
    """
    best = {name: max(before[name], after[name]) for name in before}
    return {
        "sgemm_gflops": max(best.values()),
        "sgemm_method": (
            f"fastest of {PEAK_GEMM_RUNS} interleaved runs of a {size}^3 fp32 sgemm by XLA "
            f"(jnp.dot) and by NumPy's BLAS, before and after the cases, best of the four"
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
    return (
        float(fields.get("cpu MHz", 0) or 0),
        fields.get("vendor_id", ""),
        int(fields.get("cpu family", 0) or 0),
        set(fields.get("flags", "").split()),
    )


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
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
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
        "isa": jaxcps.active_isa(),
        "supported_isas": list(jaxcps.supported_isas()),
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
    root = Path(jaxcps.__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")
