"""Concurrent jaxcps calls give the serial results and never deadlock.

Two sources of concurrency: Python threads calling jitted convolutions at once (XLA then runs
several handlers on its shared intra-op pool), and XLA itself running handlers at once on
several CPU devices (a sharded program, and independent convolutions in one program). The
handlers share that pool with XLA (ffi/bindings/handlers.cc, PoolParallel); they must finish
even when it has one thread or runs tasks inline, so the same checks run in subprocesses
restricted to one CPU (the pool sizes itself from the CPUs the process may use) and with Eigen's
multi-threading off. Every kernel partitions its output without overlap, so results for the
same inputs are deterministic and compared exactly; a batch split across devices is compared
to one image at a time up to rounding (a kernel may tune itself to the batch it gets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

DN = ("NHWC", "HWIO", "NHWC")
THREADS = 6
ROUNDS = 3
DEADLINE = 120  # seconds; a deadlock shows as a thread still alive after it


def _inputs(seed: int, batch: int = 2):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 12, 11, 16)).astype(np.float32)
    x[x < 0.6] = 0  # about 70% zeros
    w = rng.standard_normal((3, 3, 16, 24)).astype(np.float32)
    return x, w


def _conv_fn(algorithm: str):
    import jax

    import jaxcps

    return jax.jit(
        lambda x, w: jaxcps.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=DN, algorithm=algorithm
        )
    )


def _hammer_threads() -> dict:
    """THREADS threads, each ROUNDS times over every algorithm on its own input."""
    import numpy as np

    from jaxcps.algorithms import FFI_ALGORITHMS

    fns = {a: _conv_fn(a) for a in FFI_ALGORITHMS}
    inputs = [_inputs(seed) for seed in range(THREADS)]
    serial = [{a: np.asarray(fns[a](x, w)) for a in FFI_ALGORITHMS} for x, w in inputs]
    mismatches, errors = [], []
    barrier = threading.Barrier(THREADS)

    def work(t: int) -> None:
        try:
            barrier.wait()
            x, w = inputs[t]
            for r in range(ROUNDS):
                for a in FFI_ALGORITHMS[r % 2 :] + FFI_ALGORITHMS[: r % 2]:
                    if not np.array_equal(np.asarray(fns[a](x, w)), serial[t][a]):
                        mismatches.append((t, r, a))
        except Exception as e:  # noqa: BLE001 (reported to the test)
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    hung = sum(t.is_alive() for t in threads)
    return dict(
        calls=THREADS * ROUNDS * len(FFI_ALGORITHMS),
        mismatches=mismatches,
        errors=errors,
        hung=hung,
    )


def _many_devices() -> dict:
    """Handlers on every device at once: a batch-sharded program and independent convolutions
    in one program, each against the same work done one call at a time."""
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import jaxcps
    from jaxcps.algorithms import FFI_ALGORITHMS

    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("d",))
    report = dict(devices=len(devices), mismatches=[])
    x, w = _inputs(100, batch=2 * len(devices))
    x_sharded = jax.device_put(x, NamedSharding(mesh, P("d")))
    for a in FFI_ALGORITHMS:
        fn = _conv_fn(a)
        serial = np.concatenate([np.asarray(fn(x[i : i + 1], w)) for i in range(len(x))])
        # Not bit for bit: a kernel may tune itself to the batch it gets (CPO's channel block
        # follows the batch's density), which changes the rounding, never more.
        scale = float(np.abs(serial).max())
        for _ in range(ROUNDS):
            if float(np.abs(np.asarray(fn(x_sharded, w)) - serial).max()) > 1e-5 * scale:
                report["mismatches"].append(f"sharded {a}")

    # Independent convolutions (different algorithms, inputs and shapes) in one program.
    pairs = [_inputs(200 + i, batch=1 + i % 2) for i in range(len(FFI_ALGORITHMS))]

    @jax.jit
    def independent(pairs):
        return [
            jaxcps.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN, algorithm=a)
            for a, (x, w) in zip(FFI_ALGORITHMS, pairs)
        ]

    serial = [np.asarray(_conv_fn(a)(x, w)) for a, (x, w) in zip(FFI_ALGORITHMS, pairs)]
    for _ in range(ROUNDS):
        for a, got, want in zip(FFI_ALGORITHMS, independent(pairs), serial):
            if not np.array_equal(np.asarray(got), want):
                report["mismatches"].append(f"independent {a}")
    return report


def _worker(one_cpu: bool) -> None:
    if one_cpu:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    report = dict(many_devices=_many_devices(), threads=_hammer_threads())
    print(json.dumps(report), flush=True)


def _run(devices: int, one_cpu: bool, extra_flags: str = "") -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = (
        f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices} {extra_flags}"
    )
    args = [sys.executable, __file__, "--worker"] + (["--one-cpu"] if one_cpu else [])
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=2 * DEADLINE, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"deadlock: no answer in {2 * DEADLINE} s ({devices} devices, one_cpu={one_cpu})"
        )
    assert proc.returncode == 0, f"worker died ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check(report: dict, devices: int) -> None:
    many = report["many_devices"]
    assert many["devices"] == devices, many
    assert many["mismatches"] == [], many
    threads = report["threads"]
    assert threads["hung"] == 0, f"{threads['hung']} threads deadlocked"
    assert threads["errors"] == [], threads["errors"]
    assert threads["mismatches"] == [], threads["mismatches"]


def test_threads_in_this_process() -> None:
    result = _hammer_threads()
    assert result["hung"] == 0, f"{result['hung']} threads deadlocked"
    assert result["errors"] == [] and result["mismatches"] == [], result


def test_four_devices() -> None:
    _check(_run(4, one_cpu=False), 4)


@pytest.mark.parametrize(
    "devices,flags",
    [(1, "--xla_cpu_multi_thread_eigen=false"), (4, "")],
    ids=["one-device-no-eigen-threads", "four-devices"],
)
def test_one_cpu_small_pool(devices: int, flags: str) -> None:
    _check(_run(devices, one_cpu=True, extra_flags=flags), devices)


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(one_cpu="--one-cpu" in sys.argv)
