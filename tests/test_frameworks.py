"""`jaxcps.routed` and `jaxcps.select` on models of other frameworks, built without
downloading weights: Keras 3 (a ResNet50 application and a small functional CNN), Equinox,
Haiku and Flax linen.

For each model: the keys are the layer names the framework gives, the routed model equals
the unrouted one and its compiled program holds one jaxcps custom call per routed conv. For
each model but ResNet50 (whose backward pass and per-layer timing would take most of the
suite's time), gradients through the routed model equal the unrouted ones, and select ->
Plan -> routed runs the plan (selection's timing rigged so that "cps" wins).

Keras reads its backend when first imported: KERAS_BACKEND is set before that, here. The
frameworks are optional test dependencies (the `test` extra); a missing one skips its cases.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

os.environ["KERAS_BACKEND"] = "jax"  # before any import of keras

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    assert_close,
    compiled,
    kernel_calls,
    skip_unless_allowed,
    sparse_activation,
)

import jaxcps
from jaxcps import measure


def need(module: str) -> Any:
    """Imports an optional framework, or skips the test."""
    try:
        return importlib.import_module(module)
    except ImportError:
        skip_unless_allowed(f"{module} is not installed (it is in the `test` extra)")


def rbg_key(seed: int) -> jax.Array:
    """An "rbg" key: XLA on CPU compiles the default threefry generator slowly."""
    return jax.random.key(seed, impl="rbg")


@dataclasses.dataclass
class Case:
    """A model as `fn(params, x)`, and what routing it must give.

    Attributes:
      fn, params, x: the model, its parameters (a pytree of arrays) and an input.
      keys: its convolutions' keys (in any order).
      policy: a policy naming each key's algorithm.
      calls: algorithm -> number of jaxcps custom calls that `policy` gives.
    """

    fn: Callable[[Any, jax.Array], jax.Array]
    params: Any
    x: np.ndarray
    keys: list[str]
    policy: Any
    calls: dict[str, int]


def relu_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return sparse_activation(np.random.default_rng(seed), shape, 0.5)


def keras_resnet50() -> Case:
    keras = need("keras")
    model = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    return Case(
        fn=lambda params, x: model(x, training=False),
        params=(),
        x=relu_input((1, 32, 32, 3)),
        keys=[f"resnet50/{name}" for name in convs],
        # Stage 2 has 3 blocks of 3 convs and a shortcut, stage 3 four blocks.
        policy={"resnet50/conv2_*": "cps", "resnet50/conv3_*": "cpo", "*": "mec"},
        calls={"cps": 10, "cpo": 13, "mec": 30},
    )


def keras_cnn() -> Case:
    keras = need("keras")
    rng = np.random.default_rng(1)

    def init(shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        # NumPy: Keras's own initializers compile a random generator per shape.
        return (0.3 * rng.standard_normal(shape)).astype(np.float32)

    conv = {"kernel_initializer": init, "bias_initializer": init}
    inputs = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem", **conv)(inputs)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="down", **conv)(h)
    h = keras.layers.DepthwiseConv2D(
        3, padding="same", name="depthwise", depthwise_initializer=init
    )(h)
    model = keras.Model(inputs, h, name="cnn")
    variables = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )
    return Case(
        fn=lambda params, x: model.stateless_call(*params, x, training=False)[0],
        params=variables,
        x=relu_input((2, 12, 12, 3)),
        # stateless_call opens no scope for the model itself
        keys=["stem", "down", "depthwise"],
        policy={"depthwise": "cpo", "*": "cps"},
        calls={"cps": 2, "cpo": 1},
    )


def equinox_cnn() -> Case:
    eqx = need("equinox")
    k1, k2, k3 = jax.random.split(rbg_key(2), 3)
    model = eqx.nn.Sequential(
        [
            eqx.nn.Conv2d(3, 8, 3, padding=1, key=k1),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Conv2d(8, 8, 3, stride=2, key=k2),
            eqx.nn.Lambda(jax.nn.relu),
            eqx.nn.Conv2d(8, 4, 3, padding=1, groups=4, key=k3),
        ]
    )
    # jax.jit takes arrays only: the model's functions (the Lambdas) stay outside.
    arrays, static = eqx.partition(model, eqx.is_array)
    return Case(
        fn=lambda arrays, x: jax.vmap(eqx.combine(arrays, static))(x),
        params=arrays,
        x=relu_input((2, 3, 12, 12)),  # Equinox convolutions are channels-first
        keys=[
            "eqx.nn.Sequential/eqx.nn.Conv",
            "eqx.nn.Sequential/eqx.nn.Conv#1",
            "eqx.nn.Sequential/eqx.nn.Conv#2",
        ],
        policy={"*/eqx.nn.Conv": "mec", "*#*": "cps"},
        calls={"mec": 1, "cps": 2},
    )


def haiku_cnn() -> Case:
    hk = need("haiku")

    def net(x: jax.Array) -> jax.Array:
        x = jax.nn.relu(hk.Conv2D(8, 3, name="stem")(x))
        return hk.Sequential(
            [hk.Conv2D(8, 3, stride=2), jax.nn.relu, hk.Conv2D(4, 3, feature_group_count=4)]
        )(x)

    model = hk.without_apply_rng(hk.transform(net))
    x = relu_input((2, 12, 12, 3))
    return Case(
        fn=model.apply,
        params=model.init(rbg_key(3), x),
        x=x,
        keys=["stem", "sequential/conv2_d", "sequential/conv2_d_1"],
        policy="cpo",
        calls={"cpo": 3},
    )


def flax_cnn() -> Case:
    nn = need("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            x = nn.relu(nn.Conv(8, (3, 3), name="c1")(x))
            return nn.Conv(4, (3, 3), strides=2)(x)

    x = relu_input((2, 12, 12, 3))
    return Case(
        fn=Net().apply,
        params=Net().init(rbg_key(4), x),
        x=x,
        keys=["Net/c1", "Net/Conv_0"],  # the top module's class name, then its path
        policy={"Net/c1": "im2col", "*": "cps"},
        calls={"im2col": 1, "cps": 1},
    )


BUILDERS = {
    "keras-resnet50": keras_resnet50,
    "keras-cnn": keras_cnn,
    "equinox": equinox_cnn,
    "haiku": haiku_cnn,
    "flax-linen": flax_cnn,
}
#: The models small enough to differentiate and select on in the suite's time.
SMALL = [name for name in BUILDERS if name != "keras-resnet50"]


@functools.cache
def build(name: str) -> Case:
    if name.startswith("keras") and "keras" in sys.modules:
        backend = sys.modules["keras"].backend.backend()
        if backend != "jax":
            skip_unless_allowed(f"keras was imported earlier with the {backend} backend")
    return BUILDERS[name]()


@pytest.fixture(params=list(BUILDERS))
def case(request: pytest.FixtureRequest) -> Case:
    return build(request.param)


@pytest.fixture(params=SMALL)
def small_case(request: pytest.FixtureRequest) -> Case:
    return build(request.param)


def test_keys_are_the_framework_s_layer_names(case: Case) -> None:
    assert sorted(jaxcps.conv_keys(case.fn, case.params, case.x)) == sorted(case.keys)


def test_routed_model_equals_the_model(case: Case) -> None:
    fast = compiled(jaxcps.routed(case.fn, case.policy), case.params, case.x)
    assert kernel_calls(fast) == case.calls
    assert_close(fast(case.params, case.x), jax.jit(case.fn)(case.params, case.x), "routed")


def _sin_loss(fn: Callable[[Any, jax.Array], jax.Array]) -> Callable[..., jax.Array]:
    return lambda params, x: jnp.sum(jnp.sin(fn(params, x)))


def test_gradients_through_the_routed_model(small_case: Case) -> None:
    case = small_case
    fast = jaxcps.routed(case.fn, case.policy)
    got = jax.jit(jax.grad(_sin_loss(fast), argnums=(0, 1)))(case.params, case.x)
    want = jax.jit(jax.grad(_sin_loss(case.fn), argnums=(0, 1)))(case.params, case.x)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, g), w in zip(jax.tree.leaves_with_path(got), jax.tree.leaves(want)):
        assert_close(g, w, f"gradient {jax.tree_util.keystr(path)}")


@pytest.fixture
def cps_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rigs selection's timing: "cps" 1 ms, every other candidate 2 ms."""

    def fake(contenders, *, repeats, warmup, on_round=None):
        for call in contenders.values():
            jax.block_until_ready(call())
        return {name: [1e-3 if name == "cps" else 2e-3] * repeats for name in contenders}

    monkeypatch.setattr(measure, "time_interleaved", fake)


def test_select_plan_routed(small_case: Case, cps_wins: None) -> None:
    case = small_case
    plan = jaxcps.select(
        case.fn, case.params, case.x, candidates=("xla", "cps"), repeats=1, progress=False
    )
    assert sorted(plan) == sorted(case.keys) and set(plan.values()) == {"cps"}
    fast = compiled(jaxcps.routed(case.fn, plan), case.params, case.x)
    assert kernel_calls(fast) == {"cps": len(case.keys)}
    assert_close(fast(case.params, case.x), case.fn(case.params, case.x), "planned")


def test_equinox_models_with_function_leaves() -> None:
    """The unpartitioned Equinox model (its Lambdas hold functions) through Equinox's own
    filtered transformations: function leaves are static arguments of the routed call."""
    eqx = need("equinox")
    k1, k2 = jax.random.split(rbg_key(5))
    model = eqx.nn.Sequential(
        [eqx.nn.Conv2d(3, 4, 3, key=k1), eqx.nn.Lambda(jax.nn.relu), eqx.nn.Conv2d(4, 4, 3, key=k2)]
    )
    x = relu_input((2, 3, 9, 9))

    def loss(model, x):
        return jnp.sum(jnp.sin(jax.vmap(model)(x)))

    got = eqx.filter_jit(eqx.filter_value_and_grad(jaxcps.routed(loss, "cps")))(model, x)
    want = eqx.filter_value_and_grad(loss)(model, x)
    assert_close(got[0], want[0], "loss")
    for g, w in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])):
        assert_close(g, w, "gradient")
