"""A batch-sharded jaxcps convolution runs one kernel per shard, with no all-gather.

What goes wrong silently without the partitioning rule (jaxcps/rules.py): XLA cannot see into
an FFI custom call, so under `jax.jit` it all-gathers the sharded batch onto every device and
runs the whole convolution on each. Results stay right; the scale-out is lost. So the checks
here read the compiled HLO: no `all-gather`, and the custom call's operands are per-shard.
Gradients must equal the unsharded ones: the weight gradient is summed over shards exactly
once (an all-reduce is expected there), both under plain jit and inside a user's shard_map.

The checks run in one subprocess with two forced CPU devices (the device count is fixed when
JAX starts); each test below reads its part of the subprocess's report.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from jaxcps.algorithms import FFI_ALGORITHMS, KERNELS

PREPARING = tuple(a for a in FFI_ALGORITHMS if KERNELS[a].prepares)

DEVICES = 2
BATCH = 4  # images, 2 per shard


def _worker() -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import jaxcps

    devices = jax.devices()
    report: dict = {"devices": len(devices)}
    if len(devices) < DEVICES:
        print(json.dumps(report))
        return
    mesh = Mesh(np.array(devices[:DEVICES]), ("batch",))
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((BATCH, 9, 8, 6)), 0).astype(np.float32)
    w = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
    x_sharded = jax.device_put(x, NamedSharding(mesh, P("batch")))
    w_replicated = jax.device_put(w, NamedSharding(mesh, P()))
    dn = ("NHWC", "HWIO", "NHWC")

    def conv(algorithm):
        return lambda x, w: jaxcps.conv_general_dilated(
            x, w, (1, 2), "SAME", dimension_numbers=dn, algorithm=algorithm
        )

    def loss(algorithm):
        return lambda x, w: jnp.sum(jnp.sin(conv(algorithm)(x, w)))

    def custom_calls(hlo):
        return [line for line in hlo.splitlines() if "jaxcps_" in line and "custom-call" in line]

    def max_diff(a, b):
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))

    lax_y = lax.conv_general_dilated(x, w, (1, 2), "SAME", dimension_numbers=dn)
    lax_grads = jax.grad(loss("xla"), argnums=(0, 1))(x, w)
    for algorithm in FFI_ALGORITHMS:
        fwd = jax.jit(conv(algorithm))
        hlo = fwd.lower(x_sharded, w_replicated).compile().as_text()
        y = fwd(x_sharded, w_replicated)
        unsharded = fwd(x, w)
        grad = jax.jit(jax.grad(loss(algorithm), argnums=(0, 1)))
        grad_hlo = grad.lower(x_sharded, w_replicated).compile().as_text()
        dx, dw = grad(x_sharded, w_replicated)
        dx1, dw1 = grad(x, w)

        in_shard_map = jax.jit(
            jax.shard_map(
                conv(algorithm), mesh=mesh, in_specs=(P("batch"), P()), out_specs=P("batch")
            )
        )
        sm_hlo = in_shard_map.lower(x_sharded, w_replicated).compile().as_text()
        sm_dx, sm_dw = jax.jit(
            jax.grad(lambda x, w, f=in_shard_map: jnp.sum(jnp.sin(f(x, w))), argnums=(0, 1))
        )(x_sharded, w_replicated)

        report[algorithm] = {
            "custom_calls": custom_calls(hlo),
            "all_gathers": hlo.count("all-gather"),
            "output_batch_axis": y.sharding.spec[0],
            "diff_unsharded": max_diff(y, unsharded),
            "diff_lax": max_diff(y, lax_y),
            "grad_all_gathers": grad_hlo.count("all-gather"),
            "grad_custom_calls": custom_calls(grad_hlo),
            "grad_dx_diff": max_diff(dx, dx1),
            "grad_dw_diff": max_diff(dw, dw1),
            "grad_dw_diff_lax": max_diff(dw, lax_grads[1]),
            "grad_dx_diff_lax": max_diff(dx, lax_grads[0]),
            "dw_scale": float(np.max(np.abs(lax_grads[1]))),
            "shard_map_custom_calls": custom_calls(sm_hlo),
            "shard_map_all_gathers": sm_hlo.count("all-gather"),
            "shard_map_dw_diff_lax": max_diff(sm_dw, lax_grads[1]),
            "shard_map_dx_diff_lax": max_diff(sm_dx, lax_grads[0]),
        }

    # Weights closed over (prepared once, a third operand, replicated like them).
    for algorithm in PREPARING:
        fwd = jax.jit(lambda x, a=algorithm: conv(a)(x, w_replicated))
        hlo = fwd.lower(x_sharded).compile().as_text()
        in_shard_map = jax.jit(
            jax.shard_map(
                lambda x, a=algorithm: conv(a)(x, w_replicated),
                mesh=mesh,
                in_specs=P("batch"),
                out_specs=P("batch"),
            )
        )
        sm_hlo = in_shard_map.lower(x_sharded).compile().as_text()
        report[f"{algorithm} prepared"] = {
            "custom_calls": custom_calls(hlo),
            "all_gathers": hlo.count("all-gather"),
            "diff_lax": max_diff(fwd(x_sharded), lax_y),
            "shard_map_custom_calls": custom_calls(sm_hlo),
            "shard_map_diff_lax": max_diff(in_shard_map(x_sharded), lax_y),
        }

    # A plain-lax program with its own shard_map, routed from outside.
    def lax_in_shard_map(x, w):
        return jax.shard_map(
            lambda x, w: lax.conv_general_dilated(x, w, (1, 2), "SAME", dimension_numbers=dn),
            mesh=mesh,
            in_specs=(P("batch"), P()),
            out_specs=P("batch"),
        )(x, w)

    routed = jax.jit(jaxcps.routed(lax_in_shard_map, "cps"))
    routed_hlo = routed.lower(x_sharded, w_replicated).compile().as_text()
    report["routed_shard_map"] = {
        "custom_calls": custom_calls(routed_hlo),
        "all_gathers": routed_hlo.count("all-gather"),
        "diff_lax": max_diff(routed(x_sharded, w_replicated), lax_y),
    }
    print(json.dumps(report))


@pytest.fixture(scope="module")
def report() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={DEVICES}"
    )
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, __file__, "--worker"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, (
        f"sharding worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["devices"] < DEVICES:
        from conftest import skip_unless_allowed

        skip_unless_allowed(f"needs {DEVICES} CPU devices, got {result['devices']}")
    return result


def _operand_shapes(call: str) -> list[str]:
    """Operand shapes of an HLO custom-call line, from its operand layout constraints."""
    match = re.search(r"operand_layout_constraints=\{(.*?\})\}", call)
    assert match, call
    return re.findall(r"f32\[[0-9,]*\]", match.group(1))


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_forward_runs_per_shard_without_all_gather(report: dict, algorithm: str) -> None:
    r = report[algorithm]
    assert r["all_gathers"] == 0, r
    assert len(r["custom_calls"]) == 1, r["custom_calls"]
    # Per shard: BATCH / DEVICES images of the (9, 8, 6) input; the weights whole.
    assert _operand_shapes(r["custom_calls"][0]) == ["f32[2,9,8,6]", "f32[3,3,6,5]"]
    assert r["output_batch_axis"] == "batch", r


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_forward_equals_unsharded(report: dict, algorithm: str) -> None:
    r = report[algorithm]
    assert r["diff_unsharded"] == 0.0, r
    assert r["diff_lax"] < 1e-4, r


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_gradients_equal_unsharded_and_lax(report: dict, algorithm: str) -> None:
    r = report[algorithm]
    assert r["grad_all_gathers"] == 0, r
    assert [_operand_shapes(c) for c in r["grad_custom_calls"]] == [
        ["f32[2,9,8,6]", "f32[3,3,6,5]"]
    ], r["grad_custom_calls"]
    # A double-counted weight gradient would be off by its whole size, not by rounding.
    tol = 1e-4 * max(r["dw_scale"], 1.0)
    assert r["grad_dw_diff"] < tol and r["grad_dw_diff_lax"] < tol, r
    assert r["grad_dx_diff"] < 1e-4 and r["grad_dx_diff_lax"] < 1e-4, r


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_inside_user_shard_map(report: dict, algorithm: str) -> None:
    r = report[algorithm]
    assert r["shard_map_all_gathers"] == 0, r
    assert [_operand_shapes(c) for c in r["shard_map_custom_calls"]] == [
        ["f32[2,9,8,6]", "f32[3,3,6,5]"]
    ], r["shard_map_custom_calls"]
    tol = 1e-4 * max(r["dw_scale"], 1.0)
    assert r["shard_map_dw_diff_lax"] < tol, r
    assert r["shard_map_dx_diff_lax"] < 1e-4, r


@pytest.mark.parametrize("algorithm", PREPARING)
def test_prepared_weights_stay_replicated(report: dict, algorithm: str) -> None:
    r = report[f"{algorithm} prepared"]
    assert r["all_gathers"] == 0, r
    for calls in (r["custom_calls"], r["shard_map_custom_calls"]):
        assert len(calls) == 1 and "jaxcps_prepared_f32" in calls[0], calls
        shapes = _operand_shapes(calls[0])
        assert shapes[:2] == ["f32[2,9,8,6]", "f32[3,3,6,5]"] and len(shapes) == 3, shapes
    assert r["diff_lax"] < 1e-4 and r["shard_map_diff_lax"] < 1e-4, r


def test_routed_program_with_its_own_shard_map(report: dict) -> None:
    r = report["routed_shard_map"]
    assert r["all_gathers"] == 0, r
    assert [_operand_shapes(c) for c in r["custom_calls"]] == [["f32[2,9,8,6]", "f32[3,3,6,5]"]], r[
        "custom_calls"
    ]
    assert r["diff_lax"] < 1e-4, r


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
