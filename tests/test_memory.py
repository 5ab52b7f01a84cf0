"""Memory per call is bounded: repeated calls of every kernel do not grow the process.

The long version (10,000 calls per algorithm) is `tools/memory_soak.py`; this runs the same
soak, shorter, in a fresh process so that RSS reflects only the calls. Each call's workspace
(ffi/workspace.h) is freed before the call returns, so a leaked workspace per call would grow
RSS by over a GiB here.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from jaxcps.algorithms import FFI_ALGORITHMS

SOAK = pathlib.Path(__file__).resolve().parent.parent / "tools" / "memory_soak.py"


def test_rss_stays_flat_over_repeated_calls() -> None:
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--calls", "600", "--warmup", "200", "--json",
         "--max-growth-mib", "8"],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"soak died ({proc.returncode}):\n{proc.stderr[-2000:]}"
    results = json.loads(lines[-1])
    assert proc.returncode == 0, f"RSS grew: {results}\n{proc.stderr[-2000:]}"
    assert set(results) == set(FFI_ALGORITHMS)
