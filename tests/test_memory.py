"""Memory per call is bounded: repeated calls of every kernel do not grow the process.

The long version (10,000 calls per algorithm) is `tools/memory_soak.py`; this runs the same
soak, shorter, in a fresh process so that RSS reflects only the calls. Each call's workspace
(ffi/runtime/workspace.h) is freed or kept in a capped cache before the call returns, so a
leaked workspace per call would grow
RSS by over a GiB here.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from conftest import SPARSE

from jaxcps.algorithms import FFI_ALGORITHMS

SOAK = pathlib.Path(__file__).resolve().parent.parent / "tools" / "memory_soak.py"


def test_rss_stays_flat_over_repeated_calls() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--calls",
            "600",
            "--warmup",
            "200",
            "--json",
            "--max-growth-mib",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"soak died ({proc.returncode}):\n{proc.stderr[-2000:]}"
    results = json.loads(lines[-1])
    assert proc.returncode == 0, f"RSS grew: {results}\n{proc.stderr[-2000:]}"
    assert set(results) == set(FFI_ALGORITHMS)


def test_workspace_cache_reuses_large_blocks_within_its_cap() -> None:
    """Large workspaces are kept for the next call (a fresh block page-faults on first touch),
    and what is kept never exceeds the cap, whatever sizes the calls ask for."""
    import jax.numpy as jnp
    import numpy as np

    import jaxcps
    from jaxcps import _targets

    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((3, 3, 64, 64)), jnp.float32)
    cached, cap = _targets._ffi.workspace_cache()
    assert 0 < cap <= 1 << 29
    for side in (64, 96, 128, 64, 160):  # CPO/CPS forms of 1-6 MiB each
        x = jnp.asarray(np.maximum(rng.standard_normal((1, side, side, 64)), 0), jnp.float32)
        for algorithm in SPARSE:
            jaxcps.conv_general_dilated(
                x,
                w,
                (1, 1),
                "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
                algorithm=algorithm,
            ).block_until_ready()
            cached, _ = _targets._ffi.workspace_cache()
            assert 0 < cached <= cap
