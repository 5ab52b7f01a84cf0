"""Weights prepared once (jaxcps/prepared.py): when they are used, and that they change nothing.

Weights that are concrete when a convolution is traced (closed over by a jitted function, or
an eager call) go to kernels that take prepared weights packed once, as a third operand of
the FFI call `jaxcps_prepared_f32`; traced weights never do. Every result must match lax and
equal, bit for bit, the same kernel packing its weights per call. Also: preparing happens
once per weights array, its copy goes with the array, NaN/Inf weights are not prepared,
derivatives and vmap work, weights prepared for another instruction set (a compiled program
run after a switch) fall back to the per-call packing, and the handler refuses what it must.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    ISAS,
    NATIVE_DN,
    assert_close,
    compiled,
    kernel_calls,
    lax_conv,
    prepared_calls,
    sparse_activation,
    use_isa,
    weights,
)

import jaxcps
from jaxcps import _targets
from jaxcps import prepared as prepared_module
from jaxcps.algorithms import FFI_ALGORITHMS, KERNELS
from jaxcps.geometry import ConvSpec

PREPARING = tuple(a for a in FFI_ALGORITHMS if KERNELS[a].prepares)
NOT_PREPARING = next(a for a in FFI_ALGORITHMS if not KERNELS[a].prepares)

# (x shape, w shape, strides, padding, rhs_dilation, groups, dimension_numbers): output
# channels narrower than, equal to and wider than a tile, with a narrow last tile; groups;
# strides, dilation, asymmetric padding; the PyTorch layout (weights transposed to HWIO).
CONFIGS = [
    ((1, 7, 7, 64), (3, 3, 64, 40), (1, 1), "SAME", (1, 1), 1, NATIVE_DN),
    ((2, 9, 8, 32), (3, 3, 32, 200), (2, 1), "VALID", (1, 1), 1, NATIVE_DN),
    ((1, 8, 8, 32), (3, 3, 16, 64), (1, 1), "SAME", (1, 1), 2, NATIVE_DN),
    ((1, 11, 10, 24), (3, 2, 24, 128), (1, 2), ((2, 1), (0, 3)), (2, 1), 1, NATIVE_DN),
    ((2, 20, 6, 6), (48, 20, 1, 3), (1, 1), "SAME", (1, 1), 1, ("NCHW", "OIHW", "NCHW")),
]


def _conv(algorithm: str, config: tuple) -> Any:
    _, _, strides, padding, dilation, groups, dn = config
    return lambda x, w: jaxcps.conv_general_dilated(
        x,
        w,
        strides,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=dn,
        feature_group_count=groups,
        algorithm=algorithm,
    )


def _inputs(rng: np.random.Generator, config: tuple) -> tuple[jax.Array, jax.Array]:
    x_shape, w_shape = config[0], config[1]
    x = sparse_activation(rng, x_shape, 0.6, dead_channels=2)
    return jnp.asarray(x), jnp.asarray(weights(rng, w_shape))


def _oracle(x: jax.Array, w: jax.Array, config: tuple) -> jax.Array:
    _, _, strides, padding, dilation, groups, dn = config
    return lax_conv(
        x,
        w,
        strides,
        padding,
        rhs_dilation=dilation,
        dimension_numbers=dn,
        feature_group_count=groups,
    )


@pytest.mark.parametrize("algorithm", PREPARING)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}x{c[1]}")
def test_closed_over_weights_are_prepared_and_change_nothing(
    rng: np.random.Generator, algorithm: str, config: tuple
) -> None:
    x, w, conv = _case(rng, algorithm, config)
    closed = compiled(lambda x: conv(x, w), x)
    traced = compiled(conv, x, w)
    assert prepared_calls(closed) == 1 and kernel_calls(closed) == {algorithm: 1}
    assert prepared_calls(traced) == 0 and kernel_calls(traced) == {algorithm: 1}
    y = closed(x)
    assert_close(y, _oracle(x, w, config), f"{algorithm} prepared {config}")
    np.testing.assert_array_equal(np.asarray(y), np.asarray(traced(x, w)))
    np.testing.assert_array_equal(np.asarray(conv(x, w)), np.asarray(y))  # eager, prepared


def _case(rng: np.random.Generator, algorithm: str, config: tuple) -> tuple[Any, ...]:
    """x, w and the convolution of `config` with `algorithm`."""
    return (*_inputs(rng, config), _conv(algorithm, config))


def _closed_over(conv: Any, w: jax.Array) -> Any:
    """conv jitted with w closed over (concrete when traced)."""
    return jax.jit(lambda x: conv(x, w))


class _CountingFfi:
    """The compiled module, counting prepare_weights calls."""

    def __init__(self, ffi: Any) -> None:
        self._ffi = ffi
        self.prepares = 0

    def prepare_weights(self, *args: Any, **kwargs: Any) -> Any:
        self.prepares += 1
        return self._ffi.prepare_weights(*args, **kwargs)


@pytest.mark.parametrize("algorithm", PREPARING)
def test_weights_are_prepared_once_and_dropped_with_them(
    rng: np.random.Generator, algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _CountingFfi(_targets._ffi)
    monkeypatch.setattr(prepared_module, "_ffi", counting)
    config = CONFIGS[0]
    x, w, conv = _case(rng, algorithm, config)
    before = len(prepared_module._cache)
    expected = _oracle(x, w, config)
    for y in (conv(x, w), conv(x * 2, w) / 2, _closed_over(conv, w)(x)):
        assert_close(y, expected, f"{algorithm} {config}")
    assert counting.prepares == 1
    assert len(prepared_module._cache) == before + 1
    del w
    gc.collect()
    assert len(prepared_module._cache) == before


@pytest.mark.parametrize("algorithm", PREPARING)
def test_numpy_and_traced_weights_are_not_prepared(
    rng: np.random.Generator, algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = CONFIGS[0]
    x, w, conv = _case(rng, algorithm, config)
    w_numpy = np.asarray(w)  # mutable: never cached
    assert prepared_calls(compiled(lambda x: conv(x, w_numpy), x)) == 0
    counting = _CountingFfi(_targets._ffi)
    monkeypatch.setattr(prepared_module, "_ffi", counting)
    assert_close(conv(x, w_numpy), _oracle(x, w, config), f"{algorithm} eager numpy weights")
    assert counting.prepares == 0
    assert prepared_calls(compiled(lambda x, w: jax.grad(lambda w: conv(x, w).sum())(w), x, w)) == 0
    ws = jnp.stack([w, -w])
    assert prepared_calls(compiled(lambda x, ws: jax.vmap(lambda w: conv(x, w))(ws), x, ws)) == 0


@pytest.mark.parametrize("algorithm", PREPARING)
def test_no_memory_for_the_copy_packs_per_call(
    rng: np.random.Generator, algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NoMemory:
        attempts = 0

        def prepare_weights(self, *args: Any) -> Any:
            self.attempts += 1
            raise MemoryError

    no_memory = NoMemory()
    monkeypatch.setattr(prepared_module, "_ffi", no_memory)
    config = CONFIGS[0]
    x, w, conv = _case(rng, algorithm, config)
    closed = compiled(lambda x: conv(x, w), x)
    assert prepared_calls(closed) == 0
    assert_close(closed(x), _oracle(x, w, config), f"{algorithm} without memory")
    conv(x, w)  # not cached: the next trace or eager call tries again
    assert no_memory.attempts == 2


@pytest.mark.parametrize("algorithm", PREPARING)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights_are_not_prepared(
    rng: np.random.Generator, algorithm: str, value: float
) -> None:
    config = CONFIGS[0]
    x, w = _inputs(rng, config)
    w = w.at[1, 2, 5, 7].set(value)
    conv = _conv(algorithm, config)
    closed = compiled(lambda x: conv(x, w), x)
    assert prepared_calls(closed) == 0
    got, want = np.asarray(closed(x)), np.asarray(_oracle(x, w, config))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert_close(got[finite], want[finite], f"{algorithm} {value} weight")


@pytest.mark.parametrize("algorithm", PREPARING)
def test_derivatives_and_vmap_with_prepared_weights(
    rng: np.random.Generator, algorithm: str
) -> None:
    config = CONFIGS[2]
    x, w = _inputs(rng, config)
    ours, xla = _conv(algorithm, config), _conv("xla", config)

    def loss(conv: Any) -> Any:
        return lambda x: jnp.sum(jnp.sin(conv(x, w)))

    assert prepared_calls(compiled(jax.value_and_grad(loss(ours)), x)) == 1
    for transform in (jax.grad, lambda f: jax.grad(lambda x: jnp.sum(jax.grad(f)(x) ** 2))):
        assert_close(transform(loss(ours))(x), transform(loss(xla))(x), f"{algorithm} derivative")
    dx = jnp.asarray(weights(rng, x.shape))
    _, tangent = jax.jvp(lambda x: ours(x, w), (x,), (dx,))
    assert_close(tangent, xla(dx, w), f"{algorithm} jvp")
    xs = jnp.stack([x, 2 * x, jnp.zeros_like(x)])
    batched = compiled(jax.vmap(lambda x: ours(x, w)), xs)
    assert prepared_calls(batched) == 1  # the mapped axis folds into the batch: one call
    assert_close(batched(xs), jax.vmap(lambda x: xla(x, w))(xs), f"{algorithm} vmap")


@pytest.mark.parametrize("algorithm", PREPARING)
def test_weights_prepared_for_another_isa_fall_back(
    rng: np.random.Generator, algorithm: str, restore_isa: None
) -> None:
    config = CONFIGS[1]
    x, w, conv = _case(rng, algorithm, config)
    expected = _oracle(x, w, config)
    program = compiled(lambda x: conv(x, w), x)  # prepared for the active instruction set
    for isa in ISAS:
        use_isa(isa)
        assert_close(program(x), expected, f"{algorithm} prepared, run on {isa}")
        assert_close(conv(x, w), expected, f"{algorithm} prepared again on {isa}")


def _prepared_call(algorithm: str, x: np.ndarray, w: np.ndarray, prepared: np.ndarray, layout: int):
    spec = ConvSpec(window_strides=(1, 1), padding=((1, 1), (1, 1)), rhs_dilation=(1, 1))
    out = jax.ShapeDtypeStruct(spec.output_shape(x.shape, w.shape), np.float32)
    return jax.ffi.ffi_call(_targets.PREPARED_TARGET, out)(
        x, w, prepared, algorithm=algorithm, layout=np.int64(layout), **spec.ffi_attributes()
    )


@pytest.mark.parametrize("algorithm", PREPARING)
def test_prepared_handler_checks_its_operands(rng: np.random.Generator, algorithm: str) -> None:
    x = sparse_activation(rng, (1, 6, 5, 8), 0.5)
    w = weights(rng, (3, 3, 8, 24))
    made, layout = _targets._ffi.prepare_weights(algorithm, w)
    expected = lax_conv(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NATIVE_DN)
    assert_close(_prepared_call(algorithm, x, w, made, layout), expected, "prepared")
    # Another layout's tag: the handler packs w itself, whatever the prepared operand holds.
    stale = np.full(3, np.nan, np.float32)
    assert_close(_prepared_call(algorithm, x, w, stale, layout + 1), expected, "stale layout")
    # No output channels: nothing prepared, nothing read.
    empty_w = np.zeros((3, 3, 8, 0), np.float32)
    assert _prepared_call(algorithm, x, empty_w, np.zeros(0, np.float32), layout).shape[-1] == 0
    with pytest.raises(Exception, match=f"prepared weights of {made.size - 1} floats"):
        _prepared_call(algorithm, x, w, made[1:], layout)
    with pytest.raises(Exception, match=f"'{NOT_PREPARING}' takes no prepared weights"):
        _prepared_call(NOT_PREPARING, x, w, made, layout)
    with pytest.raises(ValueError, match="takes no prepared weights"):
        _targets._ffi.prepare_weights("im2col", w)
    with pytest.raises(ValueError, match="groups divides"):
        _targets._ffi.prepare_weights(algorithm, w, 5)
    assert _targets._ffi.prepare_weights(algorithm, np.where(w > 1, np.inf, w)) is None


@pytest.mark.parametrize("algorithm", PREPARING)
def test_concurrent_eager_calls_share_prepared_weights(
    rng: np.random.Generator, algorithm: str
) -> None:
    config = CONFIGS[3]
    x, w, conv = _case(rng, algorithm, config)
    expected = np.asarray(_oracle(x, w, config))
    errors: list[Exception] = []

    def work() -> None:
        try:
            for _ in range(4):
                assert_close(conv(x, w), expected, f"{algorithm} concurrent")
        except Exception as e:  # noqa: BLE001 (reported by the main thread)
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("algorithm", PREPARING)
def test_export_with_prepared_weights(rng: np.random.Generator, algorithm: str) -> None:
    config = CONFIGS[0]
    x, w, conv = _case(rng, algorithm, config)
    exported = jax.export.export(
        jax.jit(lambda x: conv(x, w)), disabled_checks=jaxcps.export_checks()
    )(x)
    assert "jaxcps_prepared_f32" in exported.mlir_module()
    assert_close(exported.call(x), _oracle(x, w, config), f"{algorithm} exported")
