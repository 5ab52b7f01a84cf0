"""jaxcps.flax: drop-in modules and `route` on linen and NNX models not written for jaxcps.

Routing is checked by counting the FFI targets in the traced program (so exactly the matched
layers change), by comparing outputs with plain Flax, and by checking that the model and its
parameters are as before afterwards, also when an exception escapes the context.
"""

from __future__ import annotations

import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

import jaxcps
from jaxcps._targets import PREPARED_TARGET
from jaxcps.algorithms import choose_auto
from jaxcps.flax import linen as jlinen
from jaxcps.flax import nnx as jnnx
from jaxcps.flax import route

RTOL = 1e-5


def key(seed):
    """An "rbg" key: XLA on CPU compiles the default threefry generator slowly."""
    return jax.random.key(seed, impl="rbg")


def ffi_targets(fn, *args) -> list[str]:
    """The jaxcps FFI targets called when `fn(*args)` is traced, with multiplicity. A call with
    prepared weights (NNX modules hold concrete ones) is named by the kernel's own target."""

    def walk(jaxpr, found):
        for eqn in jaxpr.eqns:
            target = str(eqn.params.get("target_name", ""))
            if target == PREPARED_TARGET:
                target = f"jaxcps_{dict(eqn.params['attributes'])['algorithm']}_f32"
            if target.startswith("jaxcps_"):
                found.append(target)
            for param in eqn.params.values():
                for item in param if isinstance(param, (list, tuple)) else [param]:
                    inner = getattr(item, "jaxpr", item)
                    if hasattr(inner, "eqns"):
                        walk(inner, found)
        return found

    return walk(jax.make_jaxpr(fn)(*args).jaxpr, [])


def assert_close(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(float(np.max(np.abs(expected))), 1e-6)
    assert np.max(np.abs(actual - expected)) <= RTOL * scale


class Backbone(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.relu(nn.Conv(8, (3, 3))(x))
        return x


class LinenNet(nn.Module):
    conv: type = nn.Conv

    @nn.compact
    def __call__(self, x):
        x = Backbone(name="backbone")(x)
        x = self.conv(4, (3, 3), strides=2, name="head")(x)
        return x.mean()


class NNXNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, conv=nnx.Conv):
        self.convs = nnx.List([conv(3, 8, (3, 3), rngs=rngs), conv(8, 8, (3, 3), rngs=rngs)])
        self.head = conv(8, 4, (3, 3), strides=2, padding="VALID", rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = nnx.relu(conv(x))
        return self.head(x).mean()


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(key(0), (1, 12, 12, 3))


@pytest.fixture(scope="module")
def linen_vars(x):
    return LinenNet().init(key(1), x)


def nnx_model():
    return NNXNet(nnx.Rngs(key(0)))


# ----------------------------------------------------------------------------- linen


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("cpo", ["jaxcps_cpo_f32"] * 4),
        ({"backbone/Conv_1": "cps"}, ["jaxcps_cps_f32"]),
        ({"backbone/*": "mec", "head": "xla"}, ["jaxcps_mec_f32"] * 3),
        ({"head": "im2col", "*": "cpo"}, ["jaxcps_cpo_f32"] * 3 + ["jaxcps_im2col_f32"]),
        (jaxcps.Plan.from_choices({"backbone/Conv_0": "cpo"}), ["jaxcps_cpo_f32"]),
        ({"nothing/*": "cpo"}, []),
    ],
)
def test_linen_route_changes_exactly_the_matched_layers(x, linen_vars, policy, expected):
    model = LinenNet()
    with route(policy):
        assert ffi_targets(model.apply, linen_vars, x) == expected
        y = jax.jit(model.apply)(linen_vars, x)
    assert_close(y, model.apply(linen_vars, x))
    assert ffi_targets(model.apply, linen_vars, x) == []


def test_linen_route_is_restored_after_an_exception(x, linen_vars):
    model = LinenNet()
    before = jax.tree.map(np.array, linen_vars)
    with pytest.raises(RuntimeError, match="boom"), route("cpo"):
        model.apply(linen_vars, x)
        raise RuntimeError("boom")
    assert ffi_targets(model.apply, linen_vars, x) == []
    assert choose_auto("head") == "xla"
    jax.tree.map(np.testing.assert_array_equal, linen_vars, before)


def test_linen_grad_under_route_matches_xla(x, linen_vars):
    model = LinenNet()
    grad = jax.jit(jax.grad(lambda v: model.apply(v, x)))
    expected = grad(linen_vars)
    with route("cpo"):
        actual = jax.jit(jax.grad(lambda v: model.apply(v, x)))(linen_vars)
    jax.tree.map(assert_close, actual, expected)


def test_nested_routes_fall_back_to_the_outer_one_and_restore_it(x, linen_vars):
    model = LinenNet()
    with route("cpo"):
        with route({"head": "xla", "backbone/Conv_0": "cps"}):
            inner = ffi_targets(model.apply, linen_vars, x)
        outer = ffi_targets(model.apply, linen_vars, x)
    assert inner == ["jaxcps_cps_f32", "jaxcps_cpo_f32", "jaxcps_cpo_f32"]
    assert outer == ["jaxcps_cpo_f32"] * 4


def test_linen_route_is_per_thread(x, linen_vars):
    model = LinenNet()
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def other_thread():
        inside.wait()
        seen["other"] = ffi_targets(model.apply, linen_vars, x)
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with route("cpo"):
        inside.set()
        done.wait()
        seen["main"] = ffi_targets(model.apply, linen_vars, x)
    thread.join()
    assert seen == {"other": [], "main": ["jaxcps_cpo_f32"] * 4}


def test_linen_checkpoint_loads_into_drop_in(x, linen_vars):
    plain, drop_in = LinenNet(), LinenNet(conv=jlinen.Conv)
    assert jax.tree.map(jnp.shape, drop_in.init(key(2), x)) == jax.tree.map(jnp.shape, linen_vars)
    assert ffi_targets(drop_in.apply, linen_vars, x) == []  # "auto" without a plan: XLA
    with route({"head": "cps"}):
        assert ffi_targets(drop_in.apply, linen_vars, x) == ["jaxcps_cps_f32"]
        assert_close(jax.jit(drop_in.apply)(linen_vars, x), plain.apply(linen_vars, x))


def test_linen_drop_in_with_explicit_algorithm_keeps_it(x):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return jlinen.Conv(4, (3, 3), algorithm="mec", name="head")(x)

    variables = Net().init(key(3), x)
    with route("cpo"):
        assert ffi_targets(Net().apply, variables, x) == ["jaxcps_mec_f32"]


# ----------------------------------------------------------------------------- NNX


def test_nnx_route_changes_matched_layers_and_restores(x):
    model = nnx_model()
    state = jax.tree.map(np.array, nnx.state(model))
    expected = model(x)
    with route({"convs/1": "cpo", "head": "cps"}, model):
        assert ffi_targets(lambda x: model(x), x) == ["jaxcps_cpo_f32", "jaxcps_cps_f32"]
        assert_close(nnx.jit(lambda m, x: m(x))(model, x), expected)
    assert model.convs[1].conv_general_dilated is lax.conv_general_dilated
    assert ffi_targets(lambda x: model(x), x) == []
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model), state)


def test_nnx_route_is_restored_after_an_exception(x):
    model = nnx_model()
    with pytest.raises(KeyError), route("cpo", model):
        assert len(ffi_targets(lambda x: model(x), x)) == 3
        raise KeyError("boom")
    assert all(
        m.conv_general_dilated is lax.conv_general_dilated for m in (*model.convs, model.head)
    )


def test_nnx_grad_under_route_matches_xla(x):
    model = nnx_model()
    loss = lambda m, x: m(x)
    expected = nnx.grad(loss)(model, x)
    with route("cps", model):
        actual = nnx.jit(nnx.grad(loss))(model, x)
    jax.tree.map(assert_close, actual, expected)


def test_nnx_checkpoint_loads_into_drop_in(x):
    plain = nnx_model()
    drop_in = NNXNet(nnx.Rngs(key(7)), conv=jnnx.Conv)
    nnx.update(drop_in, nnx.state(plain))
    assert_close(drop_in(x), plain(x))
    with route({"head": "cpo"}, drop_in):
        assert ffi_targets(lambda x: drop_in(x), x) == ["jaxcps_cpo_f32"]
    explicit = jnnx.Conv(3, 8, (3, 3), algorithm="im2col", rngs=nnx.Rngs(key(0)))
    with route("cpo", explicit):
        assert ffi_targets(lambda x: explicit(x), x) == ["jaxcps_im2col_f32"]


# ----------------------------------------------------------------------------- errors


def test_bad_policies_and_algorithms_raise():
    with pytest.raises(ValueError, match="algorithm must be one of"), route("fastest"):
        pass
    with pytest.raises(ValueError, match="policy\\['head'\\]"), route({"head": "gemm"}):
        pass
    with pytest.raises(TypeError, match="policy must be"), route(3):
        pass
    with pytest.raises(ValueError, match="algorithm must be one of"):
        jlinen.Conv(4, (3, 3), algorithm="gemm")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        jnnx.Conv(3, 4, (3, 3), algorithm="gemm", rngs=nnx.Rngs(key(0)))


def test_import_jaxcps_does_not_import_flax(tmp_path):
    import subprocess
    import sys

    code = "import sys, jaxcps; print('flax' in sys.modules)"
    # Outside the repository, so that the installed package is imported, not the source tree.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.strip() == "False"
