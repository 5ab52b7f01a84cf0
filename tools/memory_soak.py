"""Memory soak: calls every jaxcps kernel many times and checks that RSS stops growing.

    python tools/memory_soak.py                   # 10,000 calls per algorithm
    python tools/memory_soak.py --calls 1000 --json

Per algorithm: warm up (compilation, allocator arenas, BLAS buffers), read RSS, make --calls
jitted calls, read RSS again. Fails (exit 1) if any algorithm's RSS grew by more than
--max-growth-mib. Each call allocates its workspace (ffi/workspace.h) and frees it before
returning, so a leak of even one workspace per call shows as tens of MiB over the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(calls: int, warmup: int) -> dict[str, dict[str, float]]:
    import jax
    import numpy as np

    import jaxcps
    from jaxcps.algorithms import FFI_ALGORITHMS

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 28, 28, 32)).astype(np.float32)
    x[x < 0.5] = 0
    w = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    x, w = jax.device_put(x), jax.device_put(w)
    results = {}
    for algorithm in FFI_ALGORITHMS:
        fn = jax.jit(
            lambda x, w, a=algorithm: jaxcps.conv_general_dilated(
                x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), algorithm=a
            )
        )
        for _ in range(warmup):
            fn(x, w).block_until_ready()
        before = rss_mib()
        for i in range(calls):
            y = fn(x, w)
            if i % 64 == 0:  # bounded queue of in-flight calls
                y.block_until_ready()
        y.block_until_ready()
        after = rss_mib()
        results[algorithm] = dict(
            calls=calls, rss_before_mib=before, rss_after_mib=after, growth_mib=after - before
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--max-growth-mib", type=float, default=16.0)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    results = soak(args.calls, args.warmup)
    if args.json:
        print(json.dumps(results))
    else:
        for algorithm, r in results.items():
            print(
                f"{algorithm:7s} {r['calls']} calls: RSS {r['rss_before_mib']:.1f} -> "
                f"{r['rss_after_mib']:.1f} MiB ({r['growth_mib']:+.1f})"
            )
    grown = [a for a, r in results.items() if r["growth_mib"] > args.max_growth_mib]
    if grown:
        print(f"RSS grew by more than {args.max_growth_mib} MiB: {grown}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
