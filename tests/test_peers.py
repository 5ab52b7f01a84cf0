"""`jaxcps.bench.peers` against lax.conv_general_dilated at HIGHEST precision, per engine.

An engine that is not installed skips its tests; under JAXCPS_REQUIRE_ALL_TESTS (CI) that is a
failure for ONNX Runtime and OpenVINO, which the `peers` extra installs. PyTorch (the oneDNN
engine) is used when importable but no extra installs it (pip would bring a CUDA build), so a
missing torch stays a skip in CI too; torch installed but failing to import does not.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import skip_unless_allowed
from jax import lax

from jaxcps.bench import cli, harness, peers, stability
from jaxcps.bench.layers import suite_cases
from jaxcps.bench.report import CSV_COLUMNS, DENSE_ENGINES

CHECKER = Path(__file__).resolve().parent.parent / "benchmarks" / "check_peer_targets.py"

ENGINE = pytest.mark.parametrize("engine", peers.ENGINES)
RTOL = 1e-4
#: Engines whose package no extra installs: their absence is a plain skip, also in CI.
OPTIONAL_ENGINES = ("onednn",)


@functools.cache
def _available() -> dict[str, str | None]:
    # Imports the engines (seconds, for torch): once, and only when a test here runs.
    return peers.available_engines()


def _require(engine: str) -> None:
    """Skips unless `engine` can be used here (see the module docstring for CI)."""
    reason = _available()[engine]
    if reason is None:
        return
    if engine in OPTIONAL_ENGINES and peers.missing_package(engine) is not None:
        pytest.skip(f"{engine}: {reason} (optional, allowed in CI)")
    skip_unless_allowed(f"{engine}: {reason} (pip install 'jaxcps[peers]')")


def _reference(x, w, strides, padding, dilation, groups) -> np.ndarray:
    y = lax.conv_general_dilated(
        x,
        w,
        strides,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
    return np.asarray(y)


def _run_case(engine, batch, hw, c, o, kernel, strides, padding, dilation=(1, 1), groups=1):
    _require(engine)
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((batch, *hw, c), dtype=np.float32), 0)  # ReLU-like
    w = rng.standard_normal((*kernel, c // groups, o), dtype=np.float32)
    conv = peers.make_dense_conv(
        engine,
        w,
        input_shape_nhwc=x.shape,
        window_strides=strides,
        padding=padding,
        rhs_dilation=dilation,
        feature_group_count=groups,
        threads=2,
    )
    y_ref = _reference(x, w, strides, padding, dilation, groups)
    assert conv.engine == engine
    peers.check(conv(x), y_ref, RTOL)
    # run twice on prepared input: no state leaks between calls (OpenVINO shares its output)
    y1 = conv.to_nhwc(conv.run(conv.prepare(x)))
    y2 = conv(2 * x)
    peers.check(y1, y_ref, RTOL)
    peers.check(y2, 2 * y_ref, RTOL)


ASYMMETRIC = ((0, 2), (1, 0))
KERNELS = ((3, 3), (1, 7), (7, 1), (1, 1))
PADDINGS = ("SAME", "VALID", ASYMMETRIC)
#: (strides, rhs_dilation, groups): every pair of values of two of them occurs once.
BINARY = (((1, 1), (1, 1), 1), ((1, 1), (2, 2), 4), ((2, 2), (1, 1), 4), ((2, 2), (2, 2), 1))
#: Every pair of values of any two parameters occurs (12 cases, not the 96 of the product):
#: each (kernel, padding) pair once, with the rows of `BINARY` rotating.
GRID = [
    (kernel, *BINARY[(i + j) % len(BINARY)], padding)
    for i, kernel in enumerate(KERNELS)
    for j, padding in enumerate(PADDINGS)
]


@ENGINE
@pytest.mark.parametrize(("kernel", "strides", "dilation", "groups", "padding"), GRID)
def test_grid(engine, kernel, strides, dilation, groups, padding):
    batch = 3 if groups == 4 else 1
    _run_case(engine, batch, (15, 16), 32, 48, kernel, strides, padding, dilation, groups)


@ENGINE
@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
def test_depthwise(engine, strides):
    _run_case(engine, 2, (13, 12), 32, 32, (3, 3), strides, "SAME", groups=32)


@ENGINE
@pytest.mark.parametrize("padding", ["SAME", ASYMMETRIC])
def test_few_channels_mixed_strides(engine, padding):
    _run_case(engine, 3, (15, 9), 3, 5, (5, 3), (2, 1), padding)


@ENGINE
def test_wide_layer(engine):
    """Enough channels for each engine's blocked layouts and kernels."""
    _run_case(engine, 1, (14, 14), 128, 128, (3, 3), (1, 1), "SAME")


@ENGINE
def test_single_output_pixel(engine):
    """Output 1x1: an NCHW -> NHWC transpose is already contiguous, so it must still copy."""
    _run_case(engine, 2, (3, 3), 16, 8, (3, 3), (1, 1), "VALID")


@pytest.mark.parametrize(
    ("padding", "size", "kernel", "stride", "dilation"),
    [("SAME", 28, 3, 2, 1), ("SAME", 17, 7, 1, 1), ("SAME", 10, 3, 3, 2), ("VALID", 9, 3, 2, 1)],
)
def test_explicit_padding_matches_lax(padding, size, kernel, stride, dilation):
    lax_pads = lax.padtype_to_pads(
        (size, size), ((kernel - 1) * dilation + 1,) * 2, (stride,) * 2, padding
    )
    pads = peers.explicit_padding(
        padding, (size, size), (kernel, kernel), (stride,) * 2, (dilation,) * 2
    )
    assert pads == tuple(tuple(p) for p in lax_pads)


def test_explicit_padding_rejects_bad_values():
    with pytest.raises(ValueError, match="SAME"):
        peers.explicit_padding("FULL", (8, 8), (3, 3))
    with pytest.raises(ValueError, match="non-negative"):
        peers.explicit_padding(((-1, 0), (0, 0)), (8, 8), (3, 3))


def test_available_engines_reports_every_engine():
    assert set(_available()) == set(peers.ENGINES)
    assert all(reason is None or isinstance(reason, str) for reason in _available().values())


def test_missing_package_is_reported(monkeypatch):
    monkeypatch.setitem(peers._REQUIRES, "onednn", ("no_such_package_xyz",))
    assert peers.available_engines()["onednn"] == "no_such_package_xyz is not installed"
    with pytest.raises(ImportError, match="no_such_package_xyz is not installed"):
        peers.make_dense_conv(
            "onednn", np.ones((1, 1, 1, 1), np.float32), input_shape_nhwc=(1, 2, 2, 1)
        )


def test_bad_arguments():
    w = np.ones((3, 3, 4, 8), np.float32)
    with pytest.raises(ValueError, match="unknown engine"):
        peers.make_dense_conv("tvm", w, input_shape_nhwc=(1, 8, 8, 4))
    with pytest.raises(ValueError, match="input channels"):
        peers.make_dense_conv("onnxruntime", w, input_shape_nhwc=(1, 8, 8, 5))
    with pytest.raises(ValueError, match="input channels"):
        peers.make_dense_conv(
            "onnxruntime", w, input_shape_nhwc=(1, 8, 8, 12), feature_group_count=3
        )
    with pytest.raises(ValueError, match="must be >= 1"):
        peers.make_dense_conv(
            "onnxruntime", w, input_shape_nhwc=(1, 8, 8, 4), window_strides=(0, 1)
        )
    with pytest.raises(ValueError, match="threads must be"):
        peers.make_dense_conv("onnxruntime", w, input_shape_nhwc=(1, 8, 8, 4), threads=0)
    with pytest.raises(ValueError, match="empty output"):
        peers.make_dense_conv("onnxruntime", w, input_shape_nhwc=(1, 8, 2, 4), padding="VALID")


def test_check():
    ref = np.array([[1.0, -2.0]])
    assert peers.check(ref + 1e-5, ref) == pytest.approx(5e-6)
    with pytest.raises(AssertionError, match="max abs error"):
        peers.check(ref + 1e-3, ref)
    with pytest.raises(AssertionError, match="shape"):
        peers.check(ref[0], ref)


def test_openvino_import_sends_no_telemetry(tmp_path):
    """openvino's import runs telemetry that writes ~/intel/ and forks a sender, unless CI."""
    _require("openvino")
    # The module alone (it needs only numpy), not jaxcps: the child imports no JAX.
    code = (
        "import importlib.util, json, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('peers', {peers.__file__!r})\n"
        "peers = sys.modules['peers'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(peers)\n"
        "peers._import('openvino')\n"
        "print(json.dumps(os.environ.get('CI')))\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("CI", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) is None  # CI restored
    assert not (tmp_path / "intel").exists()


def test_environment_keeps_the_users_choice(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert peers.configure_environment() == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_bench_times_the_engines_in_the_same_rounds(tmp_path, monkeypatch, capsys):
    """`jaxcps bench --peers` on the smoke suite, then the targets checker on its output."""
    for engine in peers.ENGINES:
        if engine not in OPTIONAL_ENGINES:
            _require(engine)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "--suite",
            "smoke",
            "--peers",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--peak-size",
            "256",
            "--out",
            str(tmp_path),
        ]
    )
    assert cli.run(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    timed = [e for e in peers.ENGINES if _available()[e] is None]
    assert list(report["settings"]["peers"]["engines"]) == timed
    assert set(report["settings"]["peers"]["unavailable"]) == set(peers.ENGINES) - set(timed)
    for case in report["cases"]:
        for engine in timed:
            metrics = case["algorithms"][engine]
            assert metrics["ok"] and len(metrics["times_ms"]) == 2
        assert case["best_dense"] in DENSE_ENGINES
        best = case["algorithms"][case["best_dense"]]["median_ms"]
        assert best == min(case["algorithms"][e]["median_ms"] for e in ("xla", *timed))
        assert case["sparse_vs_dense"] == pytest.approx(
            best / case["algorithms"][case["best_sparse"]]["median_ms"]
        )
    fastest_engine = max(
        case["algorithms"][e]["dense_gflops"] for case in report["cases"] for e in ("xla", *timed)
    )
    assert report["peak"]["achievable_gflops"] >= fastest_engine
    with (tmp_path / "bench.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == len(suite_cases("smoke")) * (len(harness.CONTENDERS) + len(timed))
    assert "## Against the best dense engine" in (tmp_path / "results.md").read_text()
    for name in ("dense_ratio.png", "peak_share.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "against the best dense engine" in capsys.readouterr().out

    monkeypatch.setattr(
        sys,
        "argv",
        [str(CHECKER), str(tmp_path / "bench.json"), "--holdout", str(tmp_path / "bench.json")],
    )
    runpy.run_path(str(CHECKER), run_name="__main__")
    printed = capsys.readouterr().out
    assert "## holdout" in printed
    assert printed.count("speed-up over the best dense engine >= 1.2x at 50% zeros") == 2
    assert printed.count("| how steady the machine was |") == 2

    monkeypatch.setattr(
        sys, "argv", [str(CHECKER), str(tmp_path / "bench.json"), "--disturbed-cases"]
    )
    runpy.run_path(str(CHECKER), run_name="__main__")
    count = capsys.readouterr().out.strip()
    assert count == str(stability.disturbed_cases(report))


@pytest.mark.parametrize("name", ["vgg16", "resnet18", "resnet50"])
def test_onnx_export_matches_flax(name):
    """The demo's models rebuilt in ONNX from their linen parameters compute the same logits:
    batch 2, odd image sizes (SAME padding of stride-2 convs and pools), random biases."""
    _require("onnxruntime")
    from jaxcps.demo import models, onnx_models

    model = models.MODELS[name][0](width=0.0625)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 33, 41, 3)).astype(np.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0, impl="rbg"), x)["params"]

    def draw(leaf):  # He-scaled kernels; biases that move some ReLUs on or off
        fan_in = np.prod(leaf.shape[:-1]) if leaf.ndim > 1 else 40.0
        return (rng.standard_normal(leaf.shape) * np.sqrt(2 / fan_in)).astype(np.float32)

    params = jax.tree.map(draw, shapes)
    want = np.asarray(jax.jit(model.apply)({"params": params}, x))
    session = peers.onnxruntime_session(onnx_models.to_onnx(name, params, x.shape), threads=2)
    got = session.run(None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    peers.check(got, want, RTOL)


def test_onnx_export_rejects_unknown_models():
    _require("onnxruntime")
    from jaxcps.demo import models, onnx_models

    assert set(onnx_models.BUILDERS) == set(models.MODELS)
    with pytest.raises(ValueError, match="model must be one of"):
        onnx_models.to_onnx("alexnet", {}, (1, 32, 32, 3))
