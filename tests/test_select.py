"""jaxcps.flax.select: capture of real activations, per-layer choice, plan contents.

Timing is rigged (no timed assertions): `time_interleaved` is replaced by a stub that runs
each contender once and reports fixed times.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax import nnx

import jaxcps
from jaxcps import measure
from jaxcps.algorithms import FFI_ALGORITHMS
from jaxcps.flax import route, select
from jaxcps.footprint import FOOTPRINT_ALGORITHMS


def key(seed):
    """An "rbg" key: XLA on CPU compiles the default threefry generator slowly."""
    return jax.random.key(seed, impl="rbg")


class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        return nn.Conv(8, (3, 3), strides=2)(x)


class TinyNNX(nnx.Module):
    def __init__(self, rngs):
        self.first = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.second = nnx.Conv(8, 8, (3, 3), rngs=rngs)

    def __call__(self, x):
        return self.second(nnx.relu(self.first(x)))


@pytest.fixture
def rigged(monkeypatch):
    """Makes `slow` take 2 ms and every other candidate 1 ms; records what ran."""
    state = {"slow": "xla", "ran": []}

    def fake(contenders, *, repeats, warmup, on_round=None):
        for name, call in contenders.items():
            jax.block_until_ready(call())
            state["ran"].append(name)
        for r in range(repeats):
            if on_round:
                on_round(r)
        return {name: [2e-3 if name == state["slow"] else 1e-3] * repeats for name in contenders}

    monkeypatch.setattr(measure, "time_interleaved", fake)
    return state


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(key(0), (1, 10, 10, 3))


@pytest.mark.parametrize("slow, expected", [("xla", "cpo"), ("cpo", "xla")])
def test_select_picks_the_faster_of_a_rigged_pair(rigged, x, slow, expected):
    rigged["slow"] = slow
    model = Tiny()
    variables = model.init(key(1), x)
    plan = select(
        lambda x: model.apply(variables, x), x, candidates=("xla", "cpo"), repeats=2, progress=False
    )
    assert dict(plan) == {"Conv_0": expected, "Conv_1": expected}
    assert sorted(rigged["ran"]) == ["cpo", "cpo", "xla", "xla"]


def test_plan_records_shapes_zeros_times_footprints(rigged, x):
    model = Tiny()
    variables = model.init(key(1), x)
    plan = select(lambda x: model.apply(variables, x), x, repeats=1, progress=False)
    first, second = plan.records
    assert (first.input_shape, first.kernel_shape, first.output_shape) == (
        (1, 10, 10, 3),
        (3, 3, 3, 8),
        (1, 10, 10, 8),
    )
    assert second.output_shape == (1, 5, 5, 8) and second.window_strides == (2, 2)
    h = np.maximum(
        jax.lax.conv_general_dilated(
            x,
            variables["params"]["Conv_0"]["kernel"],
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        + variables["params"]["Conv_0"]["bias"],
        0,
    )
    assert second.zero_fraction == pytest.approx(float(np.mean(h == 0)))
    assert first.zero_fraction == 0.0
    assert set(second.times) == {"xla", *FFI_ALGORITHMS}
    assert second.footprints["xla"] is None
    assert second.footprints["im2col"] == jaxcps.footprint(
        h, (3, 3, 8, 8), (2, 2), "SAME", "im2col"
    )
    assert all(second.footprints[a] > 0 for a in FOOTPRINT_ALGORITHMS)


def test_select_nnx_model_and_route_with_the_plan(rigged, x):
    model = TinyNNX(nnx.Rngs(key(0)))
    plan = select(model, x, candidates=("xla", "cps"), repeats=1, progress=False)
    assert dict(plan) == {"first": "cps", "second": "cps"}
    with route(plan, model):
        y = nnx.jit(lambda m, x: m(x))(model, x)
    np.testing.assert_allclose(y, model(x), rtol=1e-5, atol=1e-5)


def test_progress_bar_on_stderr(rigged, x, capsys):
    model = Tiny()
    variables = model.init(key(1), x)
    select(lambda x: model.apply(variables, x), x, candidates=("xla",), repeats=3)
    err = capsys.readouterr().err
    assert "select [" in err and "6/6 Conv_1" in err


@pytest.mark.parametrize("prepared_weights", [False, True])
def test_select_times_prepared_weights_when_asked(rigged, x, monkeypatch, prepared_weights):
    from jaxcps import prepared

    calls = []
    real = prepared._ffi

    class Counting:
        def prepare_weights(self, *args):
            calls.append(args[0])
            return real.prepare_weights(*args)

    monkeypatch.setattr(prepared, "_ffi", Counting())
    model = Tiny()
    variables = model.init(key(1), x)
    plan = select(
        lambda x: model.apply(variables, x),
        x,
        candidates=("xla", "sparse_direct"),
        repeats=1,
        progress=False,
        prepared_weights=prepared_weights,
    )
    assert plan.meta["prepared_weights"] is prepared_weights
    # Each layer's weights prepared once, by its sparse_direct contender, or never.
    assert calls == (["sparse_direct"] * len(plan) if prepared_weights else [])


def test_select_errors(x):
    model = Tiny()
    variables = model.init(key(1), x)
    fn = lambda x: model.apply(variables, x)
    with pytest.raises(ValueError, match="candidates"):
        select(fn, x, candidates=("xla", "auto"))
    with pytest.raises(ValueError, match="repeats"):
        select(fn, x, repeats=0)
    with pytest.raises(ValueError, match="without jax.jit"):
        select(jax.jit(fn), x, progress=False)
    with pytest.raises(ValueError, match="no Flax conv layer"):
        select(lambda x: x * 2, x, progress=False)
