"""`jaxcps.routed`, `jaxcps.conv_keys` and `jaxcps.select` on plain JAX programs.

The program under test has a convolution in every kind of place `routed` must reach: a named
scope, a nested jit, a scan body, a cond branch, a checkpoint, a while_loop body, the bodies
of a custom_jvp and a custom_vjp function, and vmapped code. Each convolution has its own
weights, so XLA cannot merge two of them and the compiled program holds one custom call per
routed convolution. Selection's timing is rigged (no timed assertions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    NATIVE_DN,
    assert_close,
    compiled,
    kernel_calls,
    sparse_activation,
    weights,
)
from jax import lax

import jaxcps
from jaxcps import measure
from jaxcps.routing import policy_lookup
from jaxcps.selection import capture

C = 3  # channels everywhere


def conv(x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NATIVE_DN)


@jax.jit
def block(x: jax.Array, w: jax.Array) -> jax.Array:
    with jax.named_scope("block"):
        return jax.nn.relu(conv(x, w))


@jax.custom_jvp
def smooth(x: jax.Array, w: jax.Array) -> jax.Array:
    with jax.named_scope("smooth"):
        return conv(x, w)


smooth.defjvp(lambda p, t: (smooth(*p), conv(t[0], p[1]) + conv(p[0], t[1])))


@jax.custom_vjp
def clipped(x: jax.Array, w: jax.Array) -> jax.Array:
    with jax.named_scope("clipped"):
        return conv(x, w)


def _clipped_fwd(x, w):
    return conv(x, w), (x, w)


def _clipped_bwd(res, g):
    x, w = res
    _, vjp = jax.vjp(conv, x, w)
    return vjp(g)


clipped.defvjp(_clipped_fwd, _clipped_bwd)


def program(x: jax.Array, ws: dict[str, jax.Array]) -> jax.Array:
    with jax.named_scope("stem"):
        x = jax.nn.relu(conv(x, ws["stem"]))
    x = block(x, ws["block"])

    def body(h, w):
        with jax.named_scope("loop"):
            return jax.nn.relu(conv(h, w)), None

    x, _ = lax.scan(body, x, ws["scan"])
    x = lax.cond(x.sum() > 0, lambda h: conv(h, ws["cond"]), lambda h: h, x)
    x = jax.checkpoint(lambda h: jax.nn.relu(conv(h, ws["remat"])))(x)
    # Reverse mode cannot differentiate a while_loop: its inputs are constants for autodiff.
    w = lax.stop_gradient(ws["while"])
    looped = lax.while_loop(
        lambda c: c[1] < 2, lambda c: (0.5 * conv(c[0], w), c[1] + 1), (lax.stop_gradient(x), 0)
    )[0]
    x = x + looped
    x = smooth(x, ws["smooth"]) + clipped(x, ws["clipped"])
    x = jax.vmap(lambda h: conv(h[None], ws["vmap"])[0])(x)
    with jax.named_scope("stem"):  # the same scope again
        return conv(x, ws["head"])


#: conv_keys(program): in program order; cond, checkpoint, while and vmap open no scope.
KEYS = [
    "stem",
    "block",
    "loop",
    "#0",
    "#1",
    "#2",
    "smooth",
    "clipped",
    "#3",
    "stem#1",
]


@pytest.fixture
def inputs(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    ws = {
        k: weights(rng, (3, 3, C, C)) * 0.3
        for k in ("stem", "block", "cond", "remat", "while", "smooth", "clipped", "vmap", "head")
    }
    ws["scan"] = weights(rng, (2, 3, 3, C, C)) * 0.3
    return sparse_activation(rng, (2, 8, 7, C), 0.5), ws


def test_keys_follow_the_name_stack_into_every_sub_program(inputs) -> None:
    assert jaxcps.conv_keys(program, *inputs) == KEYS


def layers(x: jax.Array, ws: dict[str, jax.Array]) -> jax.Array:
    """`program` without custom differentiation rules and while_loop."""
    with jax.named_scope("stem"):
        x = jax.nn.relu(conv(x, ws["stem"]))
    x = block(x, ws["block"])
    x, _ = lax.scan(lambda h, w: (jax.nn.relu(conv(h, w)), None), x, ws["scan"])
    x = jax.checkpoint(lambda h: jax.nn.relu(conv(h, ws["remat"])))(x)
    return jax.vmap(lambda h: conv(h[None], ws["vmap"])[0])(x)


def test_keys_ignore_transformations_and_skip_gradient_convs(inputs) -> None:
    x, ws = inputs
    keys = ["stem", "block", "#0", "#1", "#2"]
    assert jaxcps.conv_keys(layers, x, ws) == keys
    assert jaxcps.conv_keys(jax.vmap(layers, in_axes=(0, None)), x[None], ws) == keys
    assert jaxcps.conv_keys(jax.grad(lambda x, ws: layers(x, ws).sum()), x, ws) == keys


def test_routed_runs_every_conv_on_the_kernel(inputs) -> None:
    fast = compiled(jaxcps.routed(program, "cps"), *inputs)
    plain = compiled(program, *inputs)
    assert_close(fast(*inputs), plain(*inputs), "routed program")
    # The scan and while bodies hold their conv once; the cond's false branch has none.
    assert kernel_calls(fast) == {"cps": len(KEYS)}
    assert kernel_calls(plain) == {}


def test_policy_globs_exact_keys_and_plans(inputs) -> None:
    policy = {"*": "mec", "stem": "cpo", "#[0-2]": "im2col", "loop": "xla", "stem#*": "cps"}
    # Exact key first ("stem"), then the first matching glob in insertion order ("*").
    calls = kernel_calls(compiled(jaxcps.routed(program, policy), *inputs))
    assert calls == {"cpo": 1, "mec": 8}
    lookup = policy_lookup(policy)
    assert [lookup(k) for k in ("stem", "stem#1", "#1", "loop", "other")] == [
        "cpo",
        "mec",
        "mec",
        "xla",
        "mec",
    ]
    lookup = policy_lookup({"#[0-2]": "im2col", "loop": "xla", "stem#*": "cps", "*": "mec"})
    assert [lookup(k) for k in ("stem", "stem#1", "#1", "#3", "loop")] == [
        "mec",
        "cps",
        "im2col",
        "mec",
        "xla",
    ]
    plan = jaxcps.Plan.from_choices({"block": "cps", "#3": "cpo", "elsewhere": "mec"})
    assert kernel_calls(compiled(jaxcps.routed(program, plan), *inputs)) == {"cps": 1, "cpo": 1}


def test_routed_composes_with_jit_vmap_and_autodiff(inputs) -> None:
    """(All jitted: one compile costs less than eager dispatch of this many small ops.)"""
    x, ws = inputs
    fast = jaxcps.routed(program, "cpo")
    xs = np.stack([x, 2 * x])
    assert_close(
        jax.jit(jax.vmap(fast, (0, None)))(xs, ws),
        jax.jit(jax.vmap(program, (0, None)))(xs, ws),
        "vmap",
    )

    def loss(fn):
        return lambda x, ws: jnp.sum(jnp.sin(fn(x, ws)))

    got = jax.jit(jax.grad(loss(fast), argnums=(0, 1)))(x, ws)
    want = jax.jit(jax.grad(loss(program), argnums=(0, 1)))(x, ws)
    assert_close(got[0], want[0], "grad x")
    for name in ws:
        assert_close(got[1][name], want[1][name], f"grad {name}")
    # Routing a differentiated function: its forward convs are keyed and routed.
    routed_grad = compiled(jaxcps.routed(jax.grad(loss(program)), "cps"), x, ws)
    assert_close(routed_grad(x, ws), want[0], "routed(grad)")
    assert kernel_calls(routed_grad)["cps"] > 0


def test_traces_once_per_input_signature(inputs, rng) -> None:
    x, ws = inputs
    traces = []

    def traced(x, ws):
        traces.append(x.shape)
        return layers(x, ws)

    fast = jaxcps.routed(traced, "cps")
    assert_close(fast(x, ws), layers(x, ws), "eager")
    fast(2 * x, ws)
    assert len(traces) == 1
    jitted = jax.jit(fast)
    jitted(x, ws)
    jitted(3 * x, ws)
    jax.jit(fast)(x, ws)  # a new jit of the same routed function: jit traces, fn does not
    assert len(traces) == 1
    jitted(sparse_activation(rng, (1, 8, 7, C), 0.5), ws)
    assert len(traces) == 2  # a new shape


def test_pytrees_in_and_out_keywords_and_static_leaves(rng) -> None:
    traces = []

    def fn(inputs, *, scale):
        traces.append(inputs["activation"])
        y = inputs["activation"](conv(inputs["x"], inputs["w"])) * scale
        return {"y": y, "stats": [y.sum(), y.max()]}

    inputs = {
        "x": sparse_activation(rng, (1, 6, 5, C), 0.5),
        "w": weights(rng, (2, 2, C, 4)),
        "activation": jax.nn.relu,  # not an array: static
    }
    fast = jaxcps.routed(fn, "cpo")
    got = fast(inputs, scale=2.0)
    want = fn(inputs, scale=2.0)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(lambda a, b: assert_close(a, b, "pytree output"), got, want)
    # Another function is another program; the same one is the cached program.
    other = {**inputs, "activation": jnp.tanh}
    assert_close(fast(other, scale=2.0)["y"], fn(other, scale=2.0)["y"], "tanh")
    fast(inputs, scale=3.0)
    assert traces.count(jax.nn.relu) == 2 and traces.count(jnp.tanh) == 2  # 1 routed + 1 direct


def test_convs_the_kernel_cannot_run_stay_on_xla(rng) -> None:
    x1 = rng.uniform(size=(2, 3, 9)).astype(np.float32)
    w1 = rng.uniform(size=(4, 3, 3)).astype(np.float32)
    x2 = sparse_activation(rng, (1, 5, 6, C), 0.5)
    w2 = weights(rng, (3, 3, C, 2))

    def fn(x1, w1, x2, w2):
        one_d = lax.conv_general_dilated(x1, w1, (1,), "SAME")
        dilated = lax.conv_general_dilated(
            x2, w2, (1, 1), ((1, 1), (1, 1)), lhs_dilation=(2, 1), dimension_numbers=NATIVE_DN
        )
        return one_d, dilated

    fast = jaxcps.routed(fn, "cps")
    for got, want in zip(fast(x1, w1, x2, w2), fn(x1, w1, x2, w2)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert kernel_calls(compiled(fast, x1, w1, x2, w2)) == {}


def test_bad_policies_raise_at_once() -> None:
    with pytest.raises(ValueError, match="algorithm must be one of"):
        jaxcps.routed(program, "fastest")
    with pytest.raises(ValueError, match=r"policy\['stem'\]"):
        jaxcps.routed(program, {"stem": "gemm"})
    with pytest.raises(TypeError, match="policy must be"):
        jaxcps.routed(program, 3)


@pytest.fixture
def cpo_wins(monkeypatch):
    """Rigs selection's timing: "cpo" 1 ms, every other candidate 2 ms."""

    def fake(contenders, *, repeats, warmup, on_round=None):
        for call in contenders.values():
            jax.block_until_ready(call())
        return {name: [1e-3 if name == "cpo" else 2e-3] * repeats for name in contenders}

    monkeypatch.setattr(measure, "time_interleaved", fake)


def test_select_plan_routed_round_trip(inputs, cpo_wins, tmp_path) -> None:
    x, ws = inputs
    plan = jaxcps.select(
        jax.jit(program), x, ws, candidates=("xla", "cpo"), repeats=1, progress=False
    )
    assert list(plan) == KEYS and set(plan.values()) == {"cpo"}
    assert plan.record("stem").input_shape == x.shape
    plan.save(tmp_path / "plan.json")
    fast = jaxcps.routed(program, jaxcps.Plan.load(tmp_path / "plan.json"))
    assert kernel_calls(compiled(fast, x, ws)) == {"cpo": len(KEYS)}
    assert_close(fast(x, ws), program(x, ws), "routed with the selected plan")


def test_select_leaves_out_convs_that_do_not_run(rng, cpo_wins) -> None:
    def fn(x, w):
        return lax.cond(x.sum() < 0, lambda x: conv(x, w), lambda x: x, conv(x, w))

    x, w = sparse_activation(rng, (1, 5, 6, C), 0.5), weights(rng, (3, 3, C, C))
    assert jaxcps.conv_keys(fn, x, w) == ["#0", "#1"]
    plan = jaxcps.select(fn, x, w, candidates=("xla", "cpo"), repeats=1, progress=False)
    assert list(plan) == ["#0"]  # the branch's conv ("#1") never ran


def test_select_records_shapes_in_nhwc_whatever_the_layout(rng, cpo_wins) -> None:
    x = sparse_activation(rng, (2, C, 9, 8), 0.5)  # NCHW
    w = weights(rng, (5, C, 3, 2))  # OIHW
    plan = jaxcps.select(
        lambda x, w: lax.conv(x, w, (2, 1), "SAME"),
        x,
        w,
        candidates=("xla", "cpo"),
        repeats=1,
        progress=False,
    )
    record = plan.record("#0")
    assert record.input_shape == (2, 9, 8, C)
    assert record.kernel_shape == (3, 2, C, 5)
    assert record.output_shape == (2, 5, 8, 5)
    assert record.window_strides == (2, 1)
    assert record.footprints["cpo"] == jaxcps.footprint(
        np.transpose(x, (0, 2, 3, 1)), record.kernel_shape, (2, 1), "SAME", "cpo"
    )


def test_capture_records_the_first_execution_of_a_loop_body(inputs) -> None:
    x, ws = inputs
    layers = {layer.path: layer for layer in capture(program, x, ws)}
    np.testing.assert_array_equal(layers["loop"].rhs, ws["scan"][0])
    np.testing.assert_array_equal(layers["stem"].lhs, x)
    np.testing.assert_array_equal(layers["stem#1"].rhs, ws["head"])


def test_select_errors(inputs) -> None:
    with pytest.raises(ValueError, match="candidates"):
        jaxcps.select(program, *inputs, candidates=("xla", "auto"))
    with pytest.raises(ValueError, match="repeats"):
        jaxcps.select(program, *inputs, repeats=0)
    with pytest.raises(ValueError, match="no convolution"):
        jaxcps.select(lambda x, ws: x * 2, *inputs, progress=False)
