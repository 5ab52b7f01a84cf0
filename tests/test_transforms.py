"""jaxcps under JAX's transformations: jit (one compile per shape), vmap (the batch folded
into one kernel call when the weights are shared), grad (lax's gradients), low-precision
dtypes, and "auto"/"xla" being exactly lax where the kernels cannot run.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    FFI_ALGORITHMS,
    NATIVE_DN,
    assert_close,
    lax_conv,
    reference_conv,
    sparse_activation,
    weights,
)
from jax import lax
from jax.test_util import check_grads

import jaxcps
from jaxcps import _targets
from jaxcps.algorithms import KERNELS
from jaxcps.geometry import ConvSpec

STRIDES = (2, 1)
PADDING = ((1, 2), (0, 1))


def conv(algorithm: str, x: jax.Array, w: jax.Array, dn=NATIVE_DN, **kwargs) -> jax.Array:
    return jaxcps.conv_general_dilated(
        x, w, STRIDES, PADDING, dimension_numbers=dn, algorithm=algorithm, **kwargs
    )


def oracle(x: jax.Array, w: jax.Array, dn=NATIVE_DN, **kwargs) -> jax.Array:
    return lax_conv(x, w, STRIDES, PADDING, dimension_numbers=dn, **kwargs)


@pytest.fixture
def xw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A sparse NHWC activation and HWIO weights."""
    return sparse_activation(rng, (2, 7, 9, 4), 0.6), weights(rng, (3, 2, 4, 5))


def custom_calls(hlo: str) -> list[str]:
    """The lines of lowered StableHLO that call a jaxcps FFI target."""
    return [line for line in hlo.splitlines() if "custom_call @jaxcps_" in line]


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_eager_equals_jit(algorithm: str, xw: tuple[np.ndarray, np.ndarray]) -> None:
    x, w = xw
    eager = conv(algorithm, x, w)
    jitted = jax.jit(functools.partial(conv, algorithm))(x, w)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))
    assert_close(eager, oracle(x, w), f"{algorithm} eager")


def test_disable_jit(xw: tuple[np.ndarray, np.ndarray]) -> None:
    x, w = xw
    with jax.disable_jit():
        y = conv("cps", x, w)
    assert_close(y, oracle(x, w), "cps with jit disabled")


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_second_jit_call_does_not_retrace(algorithm: str, rng: np.random.Generator) -> None:
    traces = []

    @jax.jit
    def f(x: jax.Array, w: jax.Array) -> jax.Array:
        traces.append(x.shape)
        return conv(algorithm, x, w)

    shape, wshape = (1, 6, 11, 3), (2, 2, 3, 7)
    for _ in range(3):
        f(sparse_activation(rng, shape, 0.5), weights(rng, wshape)).block_until_ready()
    assert len(traces) == 1
    assert f._cache_size() == 1
    f(sparse_activation(rng, (2, *shape[1:]), 0.5), weights(rng, wshape)).block_until_ready()
    assert len(traces) == 2  # a new shape compiles once more


def test_eager_calls_reuse_the_compiled_kernel(rng: np.random.Generator) -> None:
    """Eager calls go through one jitted wrapper: same shapes, no new executable."""
    from jaxcps.conv import _run_kernel

    x, w = sparse_activation(rng, (1, 5, 13, 2), 0.5), weights(rng, (3, 3, 2, 3))
    conv("cpo", x, w).block_until_ready()
    before = _run_kernel._cache_size()
    for _ in range(3):
        conv("cpo", x * 2, w).block_until_ready()
    assert _run_kernel._cache_size() == before


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_vmap_unmapped_weights_folds_into_one_call(
    algorithm: str, rng: np.random.Generator
) -> None:
    xs = sparse_activation(rng, (3, 2, 7, 9, 4), 0.5)
    w = weights(rng, (3, 2, 4, 5))
    f = jax.vmap(functools.partial(conv, algorithm), in_axes=(0, None))
    got = f(xs, w)
    want = jnp.stack([oracle(x, w) for x in xs])
    assert_close(got, want, f"{algorithm} vmap(in_axes=(0, None))")
    hlo = jax.jit(f).lower(xs, w).as_text()
    calls = custom_calls(hlo)
    assert len(calls) == 1, calls
    assert "tensor<6x7x9x4xf32>" in calls[0], calls[0]  # 3 x 2 images in one call
    assert "stablehlo.while" not in hlo


def test_vmap_mapped_weights(rng: np.random.Generator) -> None:
    xs = sparse_activation(rng, (3, 2, 7, 9, 4), 0.5)
    ws = weights(rng, (3, 3, 2, 4, 5))
    for algorithm in FFI_ALGORITHMS:
        got = jax.vmap(functools.partial(conv, algorithm))(xs, ws)
        want = jnp.stack([oracle(x, w) for x, w in zip(xs, ws)])
        assert_close(got, want, f"{algorithm} vmap with mapped weights")
    # Only the weights mapped: the one activation is shared.
    got = jax.vmap(functools.partial(conv, "cpo"), in_axes=(None, 0))(xs[0], ws)
    want = jnp.stack([oracle(xs[0], w) for w in ws])
    assert_close(got, want, "cpo vmap(in_axes=(None, 0))")


def test_vmap_moved_axes(rng: np.random.Generator) -> None:
    """in_axes=1 on the activation, out_axes=2, and an NCHW/OIHW layout."""
    xs = sparse_activation(rng, (2, 3, 7, 9, 4), 0.5)  # axis 1 is the vmapped one
    w = weights(rng, (3, 2, 4, 5))
    for algorithm in FFI_ALGORITHMS:
        got = jax.vmap(functools.partial(conv, algorithm), in_axes=(1, None), out_axes=2)(xs, w)
        want = jnp.stack([oracle(xs[:, b], w) for b in range(3)], axis=2)
        assert_close(got, want, f"{algorithm} vmap(in_axes=(1, None), out_axes=2)")
    dn = ("NCHW", "OIHW", "NCHW")
    xs_nchw = np.transpose(xs, (0, 1, 4, 2, 3))
    w_oihw = np.transpose(w, (3, 2, 0, 1))
    got = jax.vmap(functools.partial(conv, "cps", dn=dn), in_axes=(1, None))(xs_nchw, w_oihw)
    want = jnp.stack([oracle(xs_nchw[:, b], w_oihw, dn=dn) for b in range(3)])
    assert_close(got, want, "cps vmap NCHW")


def test_nested_vmap(rng: np.random.Generator) -> None:
    xs = sparse_activation(rng, (2, 3, 1, 7, 9, 4), 0.5)
    w = weights(rng, (3, 2, 4, 5))
    f = jax.vmap(jax.vmap(functools.partial(conv, "cpo"), in_axes=(0, None)), in_axes=(0, None))
    got = f(xs, w)
    want = jnp.stack([jnp.stack([oracle(x, w) for x in row]) for row in xs])
    assert_close(got, want, "cpo nested vmap")
    calls = custom_calls(jax.jit(f).lower(xs, w).as_text())
    assert len(calls) == 1 and "tensor<6x7x9x4xf32>" in calls[0], calls
    # Mapped weights inside, shared activation outside.
    ws = weights(rng, (3, 3, 2, 4, 5))
    g = jax.vmap(jax.vmap(functools.partial(conv, "mec")), in_axes=(0, None))
    got = g(xs, ws)
    want = jnp.stack([jnp.stack([oracle(x, wi) for x, wi in zip(row, ws)]) for row in xs])
    assert_close(got, want, "mec nested vmap, mapped weights inside")


def _loss(fn, x: jax.Array, w: jax.Array, cotangent: jax.Array) -> jax.Array:
    return jnp.sum(fn(x, w) * cotangent)


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_grad_matches_lax(
    algorithm: str, xw: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
) -> None:
    x, w = xw
    ct = rng.standard_normal(np.shape(oracle(x, w))).astype(np.float32)
    got = jax.grad(functools.partial(_loss, functools.partial(conv, algorithm)), argnums=(0, 1))(
        x, w, ct
    )
    want = jax.grad(functools.partial(_loss, oracle), argnums=(0, 1))(x, w, ct)
    assert_close(got[0], want[0], f"{algorithm} dx")
    assert_close(got[1], want[1], f"{algorithm} dw")
    # Under jit, and through value_and_grad.
    value, grads = jax.jit(
        jax.value_and_grad(functools.partial(_loss, functools.partial(conv, algorithm)), argnums=1)
    )(x, w, ct)
    assert_close(value, _loss(oracle, x, w, ct), f"{algorithm} loss")
    assert_close(grads, want[1], f"{algorithm} jit dw")


def test_check_grads(rng: np.random.Generator) -> None:
    """Numerical check of the custom JVP (first order, reverse mode), in float32."""
    x = rng.uniform(0.1, 1.0, (1, 4, 5, 2)).astype(np.float32)
    w = weights(rng, (2, 3, 2, 3))
    for algorithm in FFI_ALGORITHMS:
        check_grads(
            functools.partial(conv, algorithm),
            (x, w),
            order=1,
            modes=["rev"],
            atol=5e-2,
            rtol=5e-2,
            eps=1e-2,
        )


def test_vmap_of_grad_and_grad_of_vmap(rng: np.random.Generator) -> None:
    xs = sparse_activation(rng, (3, 1, 7, 9, 4), 0.5)
    w = weights(rng, (3, 2, 4, 5))

    def loss(fn, x, w):
        return jnp.sum(fn(x, w) ** 2)

    ours = functools.partial(loss, functools.partial(conv, "cps"))
    ref = functools.partial(loss, oracle)
    # Per-example weight gradients.
    got = jax.vmap(jax.grad(ours, argnums=1), in_axes=(0, None))(xs, w)
    want = jnp.stack([jax.grad(ref, argnums=1)(x, w) for x in xs])
    assert_close(got, want, "vmap(grad)")
    # Gradient of a batched loss.
    batched = lambda f: lambda x, w: jnp.sum(jax.vmap(lambda xi: f(xi, w))(x))
    got = jax.grad(batched(ours), argnums=(0, 1))(xs, w)
    want = jax.grad(batched(ref), argnums=(0, 1))(xs, w)
    assert_close(got[0], want[0], "grad(vmap) dx")
    assert_close(got[1], want[1], "grad(vmap) dw")


#: Output rounding of each dtype: the kernels compute in float32 and round once at the end,
#: so they differ from float32 lax (on the same rounded inputs) by at most about one unit in
#: the last place of the largest output; 2 eps allows for lax's own rounding.
LOW_PRECISION = [(jnp.float16, 2 * 2.0**-11), (jnp.bfloat16, 2 * 2.0**-8)]


@pytest.mark.parametrize("dtype,rtol", LOW_PRECISION, ids=["float16", "bfloat16"])
def test_low_precision_inputs(dtype, rtol: float, xw: tuple[np.ndarray, np.ndarray]) -> None:
    x, w = (jnp.asarray(a, dtype) for a in xw)
    want_dtype = lax.conv_general_dilated(x, w, STRIDES, PADDING, dimension_numbers=NATIVE_DN).dtype
    want = oracle(x.astype(jnp.float32), w.astype(jnp.float32))
    for algorithm in FFI_ALGORITHMS:
        got = conv(algorithm, x, w)
        assert got.dtype == want_dtype == dtype
        assert_close(got, want, f"{algorithm} {dtype.__name__}", rtol=rtol)
        # preferred_element_type=float32: no final rounding, float32 accuracy.
        got32 = conv(algorithm, x, w, preferred_element_type=jnp.float32)
        assert got32.dtype == jnp.float32
        assert_close(got32, want, f"{algorithm} {dtype.__name__} -> float32")
    grads = jax.grad(lambda x: jnp.sum(conv("cpo", x, w).astype(jnp.float32)))(x)
    assert grads.dtype == dtype


def test_preferred_element_type_float32(xw: tuple[np.ndarray, np.ndarray]) -> None:
    x, w = xw
    lax_dtype = lax.conv_general_dilated(
        x, w, STRIDES, PADDING, dimension_numbers=NATIVE_DN, preferred_element_type=jnp.float32
    ).dtype
    for algorithm in FFI_ALGORITHMS:
        got = conv(algorithm, x, w, preferred_element_type=jnp.float32)
        assert got.dtype == lax_dtype
        assert_close(got, oracle(x, w), f"{algorithm} preferred float32")


#: Configurations the kernels cannot run: "auto" and "xla" must be lax, bit for bit.
XLA_ONLY = [
    ("lhs-dilation", (2, 7, 9, 4), (3, 2, 4, 5), {"lhs_dilation": (2, 1)}, np.float32),
    ("batch-group-count", (4, 7, 9, 4), (3, 2, 4, 6), {"batch_group_count": 2}, np.float32),
    ("int32", (2, 7, 9, 4), (3, 2, 4, 5), {}, np.int32),
    ("1-d", (2, 4, 9), (5, 4, 3), {"dimension_numbers": ("NCH", "OIH", "NCH")}, np.float32),
    (
        "3-d",
        (1, 5, 6, 7, 2),
        (2, 3, 2, 2, 3),
        {"dimension_numbers": ("NDHWC", "DHWIO", "NDHWC")},
        np.float32,
    ),
]


@pytest.mark.parametrize("name,xshape,wshape,kwargs,dtype", XLA_ONLY, ids=[c[0] for c in XLA_ONLY])
def test_auto_and_xla_are_lax_where_kernels_cannot_run(
    name, xshape, wshape, kwargs, dtype, rng
) -> None:
    x = (rng.uniform(-2, 2, xshape) * (rng.uniform(size=xshape) > 0.5)).astype(dtype)
    w = rng.uniform(-2, 2, wshape).astype(dtype)
    nd = len(xshape) - 2
    strides, padding = (1,) * nd, ((1, 0),) * nd
    kwargs = dict({"dimension_numbers": NATIVE_DN}, **kwargs)
    want = np.asarray(lax.conv_general_dilated(x, w, strides, padding, **kwargs))
    for algorithm in ("auto", "xla"):
        got = jaxcps.conv_general_dilated(x, w, strides, padding, **kwargs, algorithm=algorithm)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want, err_msg=f"{name} {algorithm}")
        jitted = jax.jit(
            functools.partial(
                jaxcps.conv_general_dilated,
                window_strides=strides,
                padding=padding,
                **kwargs,
                algorithm=algorithm,
            )
        )
        np.testing.assert_array_equal(
            np.asarray(jitted(x, w)), want, err_msg=f"{name} jit {algorithm}"
        )
    with pytest.raises(ValueError):
        jaxcps.conv_general_dilated(x, w, strides, padding, **kwargs, algorithm="cpo")


def test_auto_without_plan_is_xla(xw: tuple[np.ndarray, np.ndarray]) -> None:
    x, w = xw
    got = jax.jit(functools.partial(conv, "auto"))(x, w)
    want = lax.conv_general_dilated(x, w, STRIDES, PADDING, dimension_numbers=NATIVE_DN)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    hlo = jax.jit(functools.partial(conv, "auto")).lower(x, w).as_text()
    assert not custom_calls(hlo)


def test_float64_with_x64_enabled() -> None:
    """float64 (x64 mode, set at start-up, so in a subprocess): "auto" and "xla" are lax,
    an explicit kernel refuses it."""
    script = textwrap.dedent("""
        import numpy as np, jax, jaxcps
        from jax import lax
        x = np.random.default_rng(0).uniform(size=(1, 5, 6, 3))
        w = np.random.default_rng(1).uniform(size=(3, 3, 3, 4))
        dn = ("NHWC", "HWIO", "NHWC")
        want = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
        assert want.dtype == np.float64, want.dtype
        for algorithm in ("auto", "xla"):
            got = jaxcps.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn,
                                              algorithm=algorithm)
            assert got.dtype == np.float64
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        try:
            jaxcps.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn,
                                        algorithm="cps")
        except ValueError as e:
            assert "dtype" in str(e), e
        else:
            raise AssertionError("float64 with algorithm='cps' did not raise")
        print("ok")
        """)
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    # Run outside the repository, so that the installed package is imported, not the source tree.
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.abspath(__file__)),
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_targets_registered_once() -> None:
    """Every kernel of ffi/kernels/kernels.inc is a registered target under the one naming rule,
    and the user-facing ones are the algorithms between "xla" and "auto"."""
    assert list(_targets._ffi.registrations()) == list(KERNELS)
    assert set(KERNELS) == {*FFI_ALGORITHMS, "reference"}
    assert jaxcps.ALGORITHMS == ("xla", *FFI_ALGORITHMS, "auto")
    assert [_targets.target_name(k) for k in KERNELS] == [f"jaxcps_{k}_f32" for k in KERNELS]


def test_grad_grouped_and_dilated(rng: np.random.Generator) -> None:
    """The backward pass on XLA sees the same groups, dilation and (negative) padding."""
    x = sparse_activation(rng, (2, 6, 9, 4), 0.5)
    w = weights(rng, (2, 3, 2, 6))
    kwargs = {"feature_group_count": 2, "rhs_dilation": (1, 2)}
    want = jax.grad(lambda x, w: jnp.sum(oracle(x, w, **kwargs) ** 2), argnums=(0, 1))(x, w)
    for algorithm in FFI_ALGORITHMS:
        got = jax.grad(
            lambda x, w, a=algorithm: jnp.sum(conv(a, x, w, **kwargs) ** 2), argnums=(0, 1)
        )(x, w)
        assert_close(got[0], want[0], f"{algorithm} dx, groups 2, dilation (1, 2)")
        assert_close(got[1], want[1], f"{algorithm} dw, groups 2, dilation (1, 2)")


def test_vmap_over_an_empty_axis(rng: np.random.Generator) -> None:
    xs = np.zeros((0, 2, 7, 9, 4), np.float32)
    w = weights(rng, (3, 2, 4, 5))
    for algorithm in FFI_ALGORITHMS:
        y = jax.vmap(functools.partial(conv, algorithm), in_axes=(0, None))(xs, w)
        assert y.shape == (0, *oracle(np.zeros((2, 7, 9, 4), np.float32), w).shape)


def test_auto_crops_negative_padding_around_xla_bug() -> None:
    """XLA:CPU returns garbage for negative low + positive high padding (openxla/xla#48713);
    "auto" falling back to XLA must still give the right convolution."""
    x = np.random.default_rng(0).uniform(1, 2, (2, 3, 5, 4)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((1, 2, 4, 6)).astype(np.float32)
    padding = ((-1, 1), (0, 0))
    got = jaxcps.conv_general_dilated(
        x, w, (1, 1), padding, dimension_numbers=NATIVE_DN, algorithm="auto"
    )
    expected = reference_conv(x, w, ConvSpec((1, 1), padding))
    assert_close(got, expected, "auto with negative padding")
    grads = jax.grad(
        lambda x: jaxcps.conv_general_dilated(
            x, w, (1, 1), padding, dimension_numbers=NATIVE_DN, algorithm="auto"
        ).sum()
    )(x)
    assert np.all(np.isfinite(np.asarray(grads)))
