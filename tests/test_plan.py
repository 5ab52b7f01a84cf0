"""jaxcps.Plan: mapping behaviour, JSON round trip with a version, the printed table."""

from __future__ import annotations

import json

import pytest

import jaxcps
from jaxcps.plan import PLAN_VERSION, LayerRecord


def measured_plan() -> jaxcps.Plan:
    return jaxcps.Plan(
        [
            LayerRecord(
                path="features/Conv_0",
                choice="cpo",
                input_shape=(1, 16, 16, 8),
                kernel_shape=(3, 3, 8, 16),
                output_shape=(1, 16, 16, 16),
                window_strides=(1, 1),
                zero_fraction=0.875,
                times={"xla": 2e-3, "im2col": None, "cpo": 1e-3},
                footprints={"xla": None, "im2col": 73728, "cpo": 4096},
            ),
            LayerRecord(path="head", choice="xla", times={"xla": 1e-4, "cpo": 3e-4}),
        ],
        meta={"candidates": ["xla", "im2col", "cpo"], "repeats": 3},
    )


def test_plan_is_a_mapping_from_path_to_algorithm():
    plan = measured_plan()
    assert plan["features/Conv_0"] == "cpo"
    assert dict(plan) == {"features/Conv_0": "cpo", "head": "xla"}
    assert plan.lookup("head") == "xla"
    assert plan.lookup("missing") is None and plan.lookup(None) is None
    assert plan.record("features/Conv_0").zero_fraction == 0.875
    with pytest.raises(KeyError):
        plan["missing"]


def test_json_round_trip(tmp_path):
    plan = measured_plan()
    path = tmp_path / "plan.json"
    plan.save(path)
    data = json.loads(path.read_text())
    assert data["version"] == PLAN_VERSION and data["format"] == "jaxcps-plan"
    loaded = jaxcps.Plan.load(path)
    assert loaded == plan
    assert loaded.record("features/Conv_0").input_shape == (1, 16, 16, 8)
    assert loaded.record("features/Conv_0").times["im2col"] is None


def test_load_rejects_other_versions_and_files(tmp_path):
    path = tmp_path / "plan.json"
    data = measured_plan().to_json()
    path.write_text(json.dumps({**data, "version": PLAN_VERSION + 1}))
    with pytest.raises(ValueError, match="version"):
        jaxcps.Plan.load(path)
    path.write_text(json.dumps({"layers": []}))
    with pytest.raises(ValueError, match="not a jaxcps plan"):
        jaxcps.Plan.load(path)


def test_hand_written_plans_are_checked():
    assert dict(jaxcps.Plan.from_choices({"a": "cps"})) == {"a": "cps"}
    with pytest.raises(ValueError, match="algorithm must be one of"):
        jaxcps.Plan.from_choices({"a": "fastest"})
    with pytest.raises(ValueError, match="two records"):
        jaxcps.Plan([LayerRecord("a", "xla"), LayerRecord("a", "cpo")])


def test_printed_table():
    text = str(measured_plan())
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["layer", "input", "NHWC", "kernel"]
    row = lines[2]
    assert row.startswith("features/Conv_0") and row.rstrip().endswith("cpo")
    assert "1x16x16x8" in row and "88%" in row and "1.000*" in row and "18.0" in row
    assert lines[3].startswith("head")
