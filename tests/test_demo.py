"""`jaxcps demo` on a tiny configuration, its option errors, and the model calibration."""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np
import pytest

import jaxcps
from jaxcps.bench import peers
from jaxcps.demo import cli, models
from jaxcps.flax.select import capture

TINY = ["--image-size", "32", "--width", "0.125", "--repeats", "1"]


def parse(argv):
    parser = argparse.ArgumentParser(prog="jaxcps demo")
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def key(seed):
    return jax.random.key(seed, impl="rbg")


def test_demo_runs_on_a_tiny_configuration(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.run(parse([*TINY, "--out", str(out)])) == 0
    printed = capsys.readouterr()
    assert "stage5_conv3" in printed.out and "choice" in printed.out
    assert "end-to-end" in printed.out and "parity" in printed.out and "OK" in printed.out
    assert str(out) in printed.out
    assert "select [" in printed.err
    plan = jaxcps.Plan.load(out / "plan.json")
    assert len(plan) == 13 and plan.meta["model"] == "vgg16"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parity"] and summary["speedup"] > 0
    # ONNX Runtime joins when installed (the peers extra), and is left out with a note if not.
    if peers.missing_package("onnxruntime") is None:
        assert summary["onnxruntime_parity"] and summary["speedup_vs_onnxruntime"] > 0
        assert "over ONNX Runtime" in printed.out
    else:
        assert summary["onnxruntime_parity"] is None
        assert "ONNX Runtime not run" in printed.out
    assert (out / "layers.png").stat().st_size > 0 and (out / "compression.png").exists()


def test_demo_rejects_bad_options(tmp_path, capsys):
    assert cli.run(parse(["--image-size", "16", "--out", str(tmp_path)])) == 2
    assert "--image-size must be at least 32" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.run(parse(["--out", str(blocker)])) == 2
    assert "is not a folder" in capsys.readouterr().err
    for argv in (
        ["--model", "alexnet"],
        ["--profile", "flat"],
        ["--repeats", "0"],
        ["--width", "-1"],
        ["--image-size", "big"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            parse(argv)
        assert exit_info.value.code == 2


def test_demo_options_name_the_package_models_and_profiles():
    assert set(cli.MIN_IMAGE_SIZE) == set(models.MODELS)
    assert cli.PROFILES == models.PROFILES


def test_profiles():
    rising = models.profile_targets("rising", 13)
    assert rising[0] == 0.0 and rising[1] == pytest.approx(0.5 + 0.4 / 12)
    assert rising[-1] == pytest.approx(0.9) and np.all(np.diff(rising[1:]) > 0)
    assert models.profile_zero_fraction("inception", 0.0) == pytest.approx(0.41)
    assert models.profile_zero_fraction("inception", 1.0) == pytest.approx(0.86)
    moderate = models.profile_targets("moderate", 53)
    assert moderate[1] == pytest.approx(0.4 + 0.2 / 52) and moderate[-1] == pytest.approx(0.6)
    assert np.all(np.diff(moderate[1:]) > 0)
    with pytest.raises(ValueError, match="profile must be one of"):
        models.profile_zero_fraction("flat", 0.5)


@pytest.mark.parametrize(("name", "profile"), [("vgg16", "rising"), ("resnet18", "moderate")])
def test_calibration_hits_the_profile(name, profile):
    linen_cls, _ = models.MODELS[name]
    model = linen_cls(width=0.125)
    x = jax.random.uniform(key(0), (1, 64, 64, 3))
    variables = models.calibrate_linen(model, model.init(key(1), x), x, profile)
    layers = capture(lambda x: model.apply(variables, x), x)
    targets = models.profile_targets(profile, len(layers))
    zeros = [float(np.mean(layer.lhs == 0)) for layer in layers]
    # Residual adds can cap the reachable zeros of a block's output; VGG reaches all.
    reachable = [(z, t) for z, t in zip(zeros[1:], targets[1:]) if name == "vgg16" or z < t]
    assert all(abs(z - t) < 0.03 for z, t in reachable if name == "vgg16")
    assert np.mean([abs(z - t) for z, t in zip(zeros[1:], targets[1:])]) < 0.05


def test_nnx_calibration_matches_linen_paths():
    from flax import nnx

    model = models.VGG16NNX(width=0.125, rngs=nnx.Rngs(key(0)))
    x = jax.random.uniform(key(1), (1, 32, 32, 3))
    models.calibrate_nnx(model, x, "inception")
    layers = capture(model, x)
    assert [layer.path for layer in layers][:2] == ["stage1_conv1", "stage1_conv2"]
    targets = models.profile_targets("inception", len(layers))
    assert abs(float(np.mean(layers[1].lhs == 0)) - targets[1]) < 0.03


def test_resnet50_has_the_same_layers_in_linen_and_nnx():
    """Shapes only (traced, not run): eager ResNet-50 compiles dozens of ops."""
    from flax import nnx

    from jaxcps.flax._hooks import nnx_convs

    x = jax.ShapeDtypeStruct((1, 32, 32, 3), np.float32)
    linen = jax.eval_shape(models.ResNet50(width=0.125).init, key(1), x)["params"]
    model = nnx.eval_shape(lambda: models.ResNet50NNX(width=0.125, rngs=nnx.Rngs(0)))

    def shapes(tree):
        return {
            jax.tree_util.keystr(p): v.shape for p, v in jax.tree_util.tree_leaves_with_path(tree)
        }

    assert shapes(linen) == shapes(nnx.to_pure_dict(nnx.state(model)))
    convs = dict(nnx_convs(model))
    assert len(convs) == 1 + 16 * 3 + 4  # stem, 16 bottlenecks, 4 projections
    strides = {path: np.broadcast_to(conv.strides, 2).tolist() for path, conv in convs.items()}
    assert strides["stage2_block1/conv1"] == [1, 1]  # v1.5: the 3x3 carries the stride
    assert strides["stage2_block1/conv2"] == strides["stage2_block1/proj"] == [2, 2]
