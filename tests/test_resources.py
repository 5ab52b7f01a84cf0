"""A kernel whose memory cannot be had raises a clean Python exception, and the process goes on.

The workspace cap (JAXCPS_MAX_WORKSPACE_BYTES, test_robustness.py) refuses sizes beyond physical
memory before allocating. Below it, an allocation can still fail: the process is limited
(`ulimit -v`, a container) or memory is short. Here a subprocess limits its address space
(RLIMIT_AS) to what it uses once the call is compiled and its operands exist, plus a margin
for XLA's output and bookkeeping, so the first large workspace of the kernel (the compressed
form of a 256 MiB activation, for CPO and CPS) cannot be allocated. The call must raise an
exception naming the kernel and the allocation, and succeed once the limit is lifted. The
exception is jax's: JaxRuntimeError, or ValueError when jax meets the failure while
dispatching the call; both carry the kernel's message. im2col and MEC are not probed: they
work in blocks of bounded size. Linux only (macOS does not enforce RLIMIT_AS).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

ALGORITHMS = ("cpo", "cps")
SHAPE = (1, 2048, 2048, 16)  # 256 MiB of float32
MARGIN = 64 << 20  # bytes of address space left free: less than the compressed form needs


def _worker(algorithm: str) -> None:
    import resource

    import jax

    import jaxcps

    def conv(x, w):
        return jaxcps.conv_general_dilated(
            x, w, (4, 4), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), algorithm=algorithm
        )

    x = jax.device_put(np.ones(SHAPE, np.float32))
    w = jax.device_put(np.ones((1, 1, SHAPE[3], 1), np.float32))
    big = jax.jit(conv).lower(x, w).compile()
    # A small call starts XLA's threads (whose stacks count too). Not the big one: its blocks
    # would stay in the kernels' workspace cache, and the limited call would need no memory.
    small_x = jax.device_put(np.ones((1, 64, 64, SHAPE[3]), np.float32))
    jax.jit(conv)(small_x, w).block_until_ready()

    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + MARGIN, hard))
    report = {}
    try:
        big(x, w).block_until_ready()
        report["limited"] = "no error"
    except Exception as e:  # noqa: BLE001 - the type is what the test checks
        report["limited"] = f"{type(e).__name__}: {e}"
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    y = np.asarray(big(x, w))
    report["unlimited_ok"] = bool(np.all(y == SHAPE[3]))
    print(json.dumps(report))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_allocation_failure_is_a_clean_error(algorithm: str) -> None:
    proc = subprocess.run(
        [sys.executable, __file__, algorithm],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"worker died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    clean = ("JaxRuntimeError: INTERNAL: ", "ValueError: INTERNAL: ")
    assert report["limited"].startswith(clean), report["limited"]
    assert f"{algorithm}: cannot allocate" in report["limited"], report["limited"]
    assert report["unlimited_ok"], "the call failed or was wrong once the limit was lifted"


if __name__ == "__main__":
    _worker(sys.argv[1])
