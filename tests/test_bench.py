"""`jaxcps bench` on the tiny `smoke` suite, its layer selection, JAX's dispatch mode
(`jaxcps.timing.jax_dispatch`), and the activation generator.

No timed assertions: timings on a shared machine are noise. The harness must run, verify
every contender against XLA, and write well-formed JSON, CSV, markdown and PNG files.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxcps._targets import PREPARED_TARGET
from jaxcps.bench import cli, harness, stability, targets
from jaxcps.bench.activations import relu_activation
from jaxcps.bench.layers import (
    LAYERS,
    PEERS_BATCHES,
    PEERS_HOLDOUT_LAYERS,
    PEERS_LAYERS,
    PEERS_ZEROS,
    SWEEP_ZEROS,
    select_cases,
    suite_cases,
)
from jaxcps.bench.report import COMPRESSING, CSV_COLUMNS, SPARSE, mean_run_length, useful_flops
from jaxcps.bench.tables import format_summary


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("bench")
    code = cli.run(
        _parse(
            "--suite",
            "smoke",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--peak-size",
            "256",
            "--out",
            str(out),
        )
    )
    return code, out


def test_smoke_run_verifies_every_contender(smoke_run) -> None:
    code, out = smoke_run
    assert code == 0
    report = json.loads((out / "bench.json").read_text())
    assert [c["id"] for c in report["cases"]] == [c.id for c in suite_cases("smoke")]
    for case in report["cases"]:
        assert set(case["algorithms"]) == set(harness.CONTENDERS)
        for name, m in case["algorithms"].items():
            assert len(m["times_ms"]) == 2 and m["median_ms"] > 0
            assert m["ok"] in ((None,) if name == "xla" else (True,))
        assert case["xla_conv_path"] in ("ynn", "eigen", "unknown")
        assert case["algorithms"]["im2col"]["cr_vs_im2col"] == pytest.approx(1.0)
        # Without --peers, XLA is the only dense engine.
        assert case["best_dense"] == "xla" and case["best_sparse"] in SPARSE
        assert case["sparse_vs_dense"] == pytest.approx(
            case["algorithms"][case["best_sparse"]]["ratio_to_xla"]
        )
    peak = report["peak"]
    assert peak["achievable_gflops"] == max(peak["sgemm_gflops"], peak["dense_engine_gflops"])
    assert report["settings"]["peers"] is None
    assert report["settings"]["jax_dispatch"] == "asynchronous"  # JAX's default
    for key in ("date", "git_commit", "isa", "jax", "jaxlib", "threads", "cpu"):
        assert report["machine"][key] not in (None, "")


def test_smoke_run_writes_csv_markdown_and_png(smoke_run) -> None:
    _, out = smoke_run
    with (out / "bench.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(suite_cases("smoke")) * len(harness.CONTENDERS)
    assert all(float(r["median_ms"]) > 0 for r in rows)
    assert "| case |" in (out / "results.md").read_text()
    report = json.loads((out / "bench.json").read_text())
    assert all(f"CR {a}/im2col" in format_summary(report) for a in COMPRESSING)
    for name in ("ratio_vs_zeros.png", "compression.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_DISPATCH_SCRIPT = """
import sys
import jax
import jax.numpy as jnp
from jaxcps.timing import jax_dispatch
if sys.argv[1] == "late":
    jnp.ones(2).block_until_ready()  # JAX's CPU client exists: the mode is fixed
first, again = jax_dispatch(synchronous=True), jax_dispatch()
print(first, again, float(jax.jit(lambda x: 2 * x)(jnp.ones(())).block_until_ready()))
"""


@pytest.mark.parametrize(("when", "mode"), [("first", "synchronous"), ("late", "asynchronous")])
def test_synchronous_dispatch_only_before_jax_starts(tmp_path, when: str, mode: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAX_CPU_ENABLE_ASYNC_DISPATCH"}
    run = subprocess.run(  # outside the repo, so the installed jaxcps is imported
        [sys.executable, "-c", _DISPATCH_SCRIPT, when],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [mode, mode, "2.0"]


def test_synchronous_is_forwarded_and_recorded() -> None:
    args = _parse("--synchronous", "--suite", "smoke")
    assert "--synchronous" in cli._forwarded_args(args)
    assert "--synchronous" in cli._settings(args)["command"].split()
    assert cli._settings(args)["jax_dispatch"] == "synchronous"
    assert "--synchronous" not in cli._forwarded_args(_parse("--suite", "smoke"))


def test_constant_weights_are_closed_over_and_prepared() -> None:
    """`--constant-weights`: every contender ignores its `w` for the weights it closes over,
    and the kernels that take prepared weights run on them (the prepared FFI target)."""
    case = suite_cases("smoke")[0]
    x, w = harness.case_inputs(case, seed=0, uniform=False, dead_channels=0.0)
    per_call = harness.jitted_contenders(case)
    constant = harness.jitted_contenders(case, w)
    ignored = np.zeros_like(w)
    for name in harness.CONTENDERS:
        expected = np.asarray(per_call[name](x, w))
        np.testing.assert_allclose(
            np.asarray(constant[name](x, ignored)),
            expected,
            rtol=0,
            atol=1e-4 * np.abs(expected).max(),
        )
    for name in ("sparse_direct", "cpo"):
        assert PREPARED_TARGET in constant[name].lower(x, ignored).as_text()
        assert PREPARED_TARGET not in per_call[name].lower(x, w).as_text()


def test_useful_flops_is_exact_at_stride_and_borders() -> None:
    case = select_cases("smoke", ["5x5s2"])[0]
    x = relu_activation(case.layer.input_shape, case.zeros, seed=3)
    layer = case.layer
    oh = (layer.h - layer.kh) // layer.stride + 1  # VALID
    pairs = sum(
        np.count_nonzero(
            x[
                0,
                i * layer.stride : i * layer.stride + layer.kh,
                j * layer.stride : j * layer.stride + layer.kw,
            ]
        )
        for i in range(oh)
        for j in range(oh)
    )
    assert useful_flops(case, x) == 2.0 * layer.o * pairs


def test_paper_suite_has_every_layer_and_sweep() -> None:
    cases = suite_cases("paper")
    ids = {c.layer.id for c in cases}
    assert sum(i.startswith("vgg16/") for i in ids) == 13
    assert sum(i.startswith("resnet50/") for i in ids) == 17
    assert sum(i.startswith("inception3/") for i in ids) == 8
    sweep = {c.zeros for c in cases if c.layer.id == "vgg16/conv3_2"}
    assert sweep == {LAYERS["vgg16/conv3_2"].zeros, *SWEEP_ZEROS}
    assert {c.zeros for c in cases if c.layer.id == "inception3/L52"} == {0.86}
    assert [LAYERS[f"resnet50/conv{s}_1"].stride for s in (2, 3, 4, 5)] == [1, 2, 2, 2]


def test_peers_suites_sweep_zeros_and_batches() -> None:
    for suite, layers in (("peers", PEERS_LAYERS), ("peers-holdout", PEERS_HOLDOUT_LAYERS)):
        cases = suite_cases(suite)
        assert len(cases) == len(layers) * len(PEERS_ZEROS) * len(PEERS_BATCHES)
        assert {(c.zeros, c.batch) for c in cases} == {
            (z, b) for z in PEERS_ZEROS for b in PEERS_BATCHES
        }
    assert not {layer.id for layer in PEERS_LAYERS} & {l.id for l in PEERS_HOLDOUT_LAYERS}
    assert {layer.describe() for layer in PEERS_LAYERS} >= {
        "112x112x128->128 3x3/1 SAME",
        "7x7x512->512 3x3/1 SAME",
        "28x28x256->256 3x3/2 SAME",
    }
    case = select_cases("peers", ["vgg16/conv5_2"], [0.9], [8])[0]
    assert case.id == "vgg16/conv5_2@0.90-b8" and case.input_shape == (8, 14, 14, 512)


def test_batch_override_keeps_the_suites_zeros() -> None:
    cases = select_cases("quick", ["resnet50/conv4_2"], batches=[1, 4])
    assert [c.id for c in cases] == [
        "resnet50/conv4_2@0.70",
        "resnet50/conv4_2@0.90",
        "resnet50/conv4_2@0.70-b4",
        "resnet50/conv4_2@0.90-b4",
    ]
    with pytest.raises(ValueError, match="batch"):
        select_cases("quick", None, None, [0])


def test_inputs_have_the_cases_batch() -> None:
    case = select_cases("smoke", ["3x3"], batches=[3])[0]
    x, w = harness.case_inputs(case, seed=0, uniform=False, dead_channels=0.0)
    assert x.shape == (3, 8, 8, 8) and w.shape == case.layer.kernel_shape


def _verdict_case(
    zeros: float, batch: int, speedup: float, pct_peak: float, build: float, jaxcps_ratio: float
) -> dict:
    return {
        "id": f"l@{zeros}-b{batch}",
        "zeros": zeros,
        "batch": batch,
        "best_sparse": "cpo",
        "best_jaxcps": "cpo",
        "sparse_vs_dense": speedup,
        "algorithms": {
            "cpo": {"pct_peak": pct_peak, "build_pct": build, "ratio_to_xla": jaxcps_ratio}
        },
    }


def test_targets_report_met_missed_and_unmeasured() -> None:
    cases = [
        _verdict_case(0.5, 1, 1.5, 70.0, 2.0, 2.0),
        _verdict_case(0.5, 1, 1.0, 61.0, 4.0, 1.0),
        _verdict_case(0.0, 1, 0.5, 10.0, 12.0, 0.9),
    ]
    verdicts = {v.target: v for v in targets.evaluate({"cases": cases})}
    speed = verdicts["speed-up over the best dense engine >= 1.2x at 50% zeros, batch 1"]
    assert (speed.met, speed.cases, speed.measured) == (False, 2, 1.0)
    assert speed.miss == "short by 0.20x at worst; 1 of 2 cases miss"
    peak = verdicts["useful GFLOP/s >= 60% of the achievable peak at 50% zeros, batch 1"]
    assert peak.met and peak.measured == 61.0 and peak.miss == ""
    assert verdicts["speed-up over the best dense engine >= 4.0x at 90% zeros, batch 1"].met is None
    dense = next(v for v in verdicts.values() if "0% zeros, every layer" in v.target)
    assert not dense.met and dense.where == "l@0.0-b1"
    build = [v for v in verdicts.values() if v.target.startswith("building")]
    assert [v.measured for v in build] == [3.0, 4.0] and all(v.met for v in build)  # 0% left out
    assert "| NO |" in targets.format_verdicts(list(verdicts.values()))


def test_select_cases_by_glob_substring_and_zeros() -> None:
    cases = select_cases("paper", ["vgg16/conv5_*", "L9"], [0.5, 0.9])
    assert [c.id for c in cases][:2] == ["vgg16/conv5_1@0.50", "vgg16/conv5_1@0.90"]
    assert {c.layer.id for c in cases} == {
        "vgg16/conv5_1",
        "vgg16/conv5_2",
        "vgg16/conv5_3",
        "inception3/L91",
        "inception3/L92",
    }
    with pytest.raises(ValueError, match="no layer"):
        select_cases("quick", ["nonexistent"])
    with pytest.raises(ValueError, match="zeros"):
        select_cases("quick", None, [1.5])


@pytest.mark.parametrize("clustered", [True, False])
@pytest.mark.parametrize("zero_fraction", [0.0, 0.37, 0.9, 1.0])
def test_activation_has_exact_zero_fraction(clustered: bool, zero_fraction: float) -> None:
    x = relu_activation((2, 9, 11, 5), zero_fraction, clustered=clustered, seed=1)
    assert x.dtype == np.float32 and x.shape == (2, 9, 11, 5)
    assert np.count_nonzero(x == 0) == round(zero_fraction * x.size)
    assert np.all(x >= 0)


def test_clustered_zeros_give_longer_runs_than_uniform() -> None:
    shape = (1, 28, 28, 32)
    clustered = relu_activation(shape, 0.8, clustered=True, seed=2)
    uniform = relu_activation(shape, 0.8, clustered=False, seed=2)
    assert mean_run_length(clustered) > 2 * mean_run_length(uniform)


def test_dead_channels_are_all_zero() -> None:
    x = relu_activation((2, 8, 8, 20), 0.6, dead_channels=0.25, seed=4)
    dead = np.all(x == 0, axis=(0, 1, 2))
    assert dead.sum() >= 5
    assert np.count_nonzero(x == 0) == round(0.6 * x.size)
    with pytest.raises(ValueError, match="dead_channels"):
        relu_activation((1, 4, 4, 10), 0.1, dead_channels=0.5)


def test_activation_seeds_reproduce() -> None:
    a = relu_activation((1, 16, 16, 8), 0.7, dead_channels=0.25, seed=7)
    b = relu_activation((1, 16, 16, 8), 0.7, dead_channels=0.25, seed=7)
    c = relu_activation((1, 16, 16, 8), 0.7, dead_channels=0.25, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "bad",
    [
        {"zero_fraction": -0.1},
        {"zero_fraction": 1.1},
        {"zero_fraction": 0.5, "dead_channels": 2.0},
        {"zero_fraction": 0.5, "correlation_length": 0.0},
    ],
)
def test_activation_rejects_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError):
        relu_activation((1, 4, 4, 4), **bad)
    with pytest.raises(ValueError, match="shape"):
        relu_activation((4, 4, 4), 0.5)


def _control_case(layer: str, zeros: float, dense_ms: float, sparse_ms: float) -> dict:
    return {
        "id": f"{layer}@{zeros}",
        "layer": layer,
        "batch": 1,
        "zeros": zeros,
        "best_dense_ms": dense_ms,
        "best_sparse": "cpo",
        "sparse_vs_dense": dense_ms / sparse_ms,
        "algorithms": {"cpo": {"median_ms": sparse_ms}},
    }


def test_stability_uses_the_dense_engines_as_a_control() -> None:
    report = {
        "cases": [
            _control_case("a", 0.5, 10.0, 8.0),
            _control_case("a", 0.9, 13.0, 2.6),  # dense slowed 30%: flatters the ratio
            _control_case("b", 0.5, 4.0, 2.0),
            _control_case("lone", 0.5, 1.0, 1.0),  # no other zero fraction: no control
        ],
        "peak": {
            "sgemm_gflops_before": {"xla": 100.0, "numpy": 110.0},
            "sgemm_gflops_after": {"xla": 95.0, "numpy": 100.0},
        },
    }
    control = stability.dense_control(report)
    assert [(c.case, round(c.excess_pct, 6)) for c in control] == [("a@0.5", 0.0), ("a@0.9", 30.0)]
    medians = {m.zeros: m for m in stability.speedup_medians(report)}
    assert set(medians) == {0.5, 0.9}
    at_90 = medians[0.9]
    assert (at_90.median, at_90.reaching) == (5.0, 1)
    assert (at_90.strict_median, at_90.strict_reaching) == (pytest.approx(10.0 / 2.6), 0)
    assert medians[0.5].median == 1.25 and medians[0.5].reaching == 2
    assert stability.sgemm_drift_pct(report) == pytest.approx(-100.0 / 11)
    reasons = stability.disturbed(report)
    assert len(reasons) == 1 and "a@0.9" in reasons[0] and "+30%" in reasons[0]
    assert "of 1 case lay" in reasons[0] and stability.disturbed_cases(report) == 1
    text = stability.format_stability(report)
    assert "| 90% | 4.0x | 1 | 5.00x | 1 | 3.85x | 0 |" in text
    assert "NO: 1 of 2 cases over" in text and "| -9.1% | yes" in text
    report["peak"]["sgemm_gflops_after"] = {"xla": 50.0}
    assert len(stability.disturbed(report)) == 2
    assert stability.disturbed_cases(report) == 4  # a drifting peak disturbs every case
    assert "| -54.5% | NO" in stability.format_stability(report)
