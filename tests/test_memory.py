"""Memory per call is bounded: repeated calls of every kernel do not grow the process.

The long version (10,000 calls per algorithm) is `tools/memory_soak.py`; this runs the same
soak, shorter, in a fresh process so that RSS reflects only the calls. Each call's workspace
(ffi/runtime/workspace.h) is freed or kept in a capped cache before the call returns, so a
leaked workspace per call would grow RSS by over a GiB here. A large output fresh from the OS
gets huge pages, and the same result.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import SPARSE, assert_close, lax_conv

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


def test_a_fresh_large_output_is_advised_huge_pages_and_computed_unchanged() -> None:
    """An output over 32 MiB is memory fresh from the OS on every call (XLA allocates each
    result anew, glibc maps it afresh): the handlers ask Linux to back it with huge pages
    (ffi/runtime/pages.h). Every kernel's call here gets the advice, and its result is
    unchanged."""
    import jax.numpy as jnp
    import numpy as np

    import jaxcps
    from jaxcps import _targets

    if sys.platform != "linux" or not pathlib.Path("/sys/kernel/mm/transparent_hugepage").is_dir():
        pytest.skip("no transparent huge pages on this system")  # the OS's, allowed in CI
    rng = np.random.default_rng(3)
    x = jnp.asarray(np.maximum(rng.standard_normal((1, 136, 136, 8)), 0), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 8, 512)), jnp.float32)  # output: 36 MiB
    dn = ("NHWC", "HWIO", "NHWC")
    expected = lax_conv(x, w, (1, 1), "SAME", dimension_numbers=dn)
    for algorithm in FFI_ALGORITHMS:
        before = _targets._ffi.huge_page_advice()
        y = jaxcps.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=dn, algorithm=algorithm
        ).block_until_ready()
        assert _targets._ffi.huge_page_advice() > before, (
            f"{algorithm}: a 36 MiB output was not fresh memory; if XLA now reuses its output "
            "buffers, the advice (ffi/runtime/pages.h) no longer pays"
        )
        assert_close(y, expected, f"{algorithm}, 136x136x8 -> 512", rtol=1e-4)
        del y
