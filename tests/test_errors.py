"""Bad inputs to `jaxcps.conv_general_dilated` fail in Python, before any kernel runs, with a
`ValueError` (a `TypeError` where lax raises one) whose message names the parameter.

Every bad input here is also refused by `lax.conv_general_dilated` (checked), so jaxcps is
no stricter than the function it replaces, except for configurations that a named kernel
cannot run (lhs_dilation, batch_group_count, dtypes, 1-D, sizes past a kernel's limits),
which "auto" and "xla" run. Those are refused when the call is traced, on shapes alone, so
also for abstract operands (`jax.ShapeDtypeStruct` under `jit(...).lower` or
`jax.eval_shape`); the limits come from the compiled module, never retyped here.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import jax
import numpy as np
import pytest
from conftest import BLAS, FFI_ALGORITHMS, NATIVE_DN, assert_close, lax_conv
from jax import lax

import jaxcps
import jaxcps.flax
from jaxcps.algorithms import KERNELS

X = np.ones((2, 5, 6, 4), np.float32)
W = np.ones((3, 3, 4, 8), np.float32)

#: (id, arguments that replace the defaults, message pattern). Defaults: X, W, (1, 1),
#: "SAME", dimension_numbers NHWC/HWIO/NHWC.
BAD_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("rank-lhs", {"lhs": np.ones((2, 5, 4), np.float32)}, "rank"),
    ("rank-both", {"lhs": np.ones((2, 5, 6, 4, 1)), "rhs": W}, "rank"),
    (
        "rank-too-small",
        {"lhs": np.ones((2, 4), np.float32), "rhs": np.ones((4, 8), np.float32)},
        "rank",
    ),
    ("channels", {"rhs": np.ones((3, 3, 3, 8), np.float32)}, "channels"),
    (
        "channels-groups",
        {"rhs": np.ones((3, 3, 4, 8), np.float32), "feature_group_count": 2},
        "channels",
    ),
    (
        "groups-divide-out",
        {"rhs": np.ones((3, 3, 2, 7), np.float32), "feature_group_count": 2},
        "feature_group_count",
    ),
    ("groups-zero", {"feature_group_count": 0}, "feature_group_count"),
    ("batch-groups-zero", {"batch_group_count": 0}, "batch_group_count"),
    ("stride-zero", {"window_strides": (0, 1)}, "window_strides"),
    ("stride-negative", {"window_strides": (1, -2)}, "window_strides"),
    ("stride-short", {"window_strides": (1,)}, "window_strides"),
    ("stride-long", {"window_strides": (1, 1, 1)}, "window_strides"),
    ("stride-not-int", {"window_strides": (1.5, 1)}, "window_strides"),
    ("rhs-dilation-zero", {"rhs_dilation": (1, 0)}, "rhs_dilation"),
    ("rhs-dilation-long", {"rhs_dilation": (1, 1, 1)}, "rhs_dilation"),
    ("padding-short", {"padding": ((1, 1),)}, "padding"),
    ("padding-long", {"padding": ((1, 1), (1, 1), (1, 1))}, "padding"),
    ("padding-pair-of-3", {"padding": ((1, 1, 1), (0, 0))}, "padding"),
    ("padding-string", {"padding": "FULL"}, "padding"),
    ("padding-not-int", {"padding": ((0.5, 1), (0, 0))}, "padding"),
    ("padding-negative-height", {"padding": ((-3, -3), (0, 0))}, "padding"),
    ("padding-negative-width", {"padding": ((0, 0), (-7, 0))}, "padding"),
    ("dimension-numbers", {"dimension_numbers": ("NHWC", "HWIO", "NHW")}, "dimension_numbers"),
]


def _call(fn: Any, changes: dict[str, Any], **extra: Any) -> Any:
    args = {
        "lhs": X,
        "rhs": W,
        "window_strides": (1, 1),
        "padding": "SAME",
        "dimension_numbers": NATIVE_DN,
    }
    args.update(changes)
    lhs, rhs = args.pop("lhs"), args.pop("rhs")
    if lhs.ndim != 4 and "dimension_numbers" not in changes:
        args["dimension_numbers"] = None
    return fn(lhs, rhs, **args, **extra)


@pytest.mark.parametrize("name,changes,pattern", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input(name: str, changes: dict[str, Any], pattern: str) -> None:
    with pytest.raises((TypeError, ValueError, RuntimeError)), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # lax divides by a zero stride
        _call(lax.conv_general_dilated, changes)  # lax refuses it too ("FULL": RuntimeError)
    for algorithm in (*FFI_ALGORITHMS, "auto"):
        with pytest.raises(ValueError, match=pattern):
            _call(jaxcps.conv_general_dilated, changes, algorithm=algorithm)


@pytest.mark.parametrize(
    "name,changes,pattern", BAD_INPUTS[:10:3], ids=[b[0] for b in BAD_INPUTS[:10:3]]
)
def test_bad_input_under_jit(name: str, changes: dict[str, Any], pattern: str) -> None:
    """Under jit the same ValueError comes at trace time."""
    lhs = changes.get("lhs", X)
    rhs = changes.get("rhs", W)
    rest = {k: v for k, v in changes.items() if k not in ("lhs", "rhs")}

    @jax.jit
    def f(a: jax.Array, b: jax.Array) -> jax.Array:
        return _call(jaxcps.conv_general_dilated, dict(rest, lhs=a, rhs=b), algorithm="cpo")

    with pytest.raises(ValueError, match=pattern):
        f(lhs, rhs)


@pytest.mark.parametrize("algorithm", ["fast", "CPO", "", None, "reference"])
def test_unknown_algorithm(algorithm: Any) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        jaxcps.conv_general_dilated(
            X, W, (1, 1), "SAME", dimension_numbers=NATIVE_DN, algorithm=algorithm
        )


def test_dtype_mismatch_is_a_type_error_as_in_lax() -> None:
    w16 = W.astype(np.float16)
    with pytest.raises(TypeError):
        lax.conv_general_dilated(X, w16, (1, 1), "SAME", dimension_numbers=NATIVE_DN)
    for algorithm in (*FFI_ALGORITHMS, "auto"):
        with pytest.raises(TypeError, match="dtype"):
            jaxcps.conv_general_dilated(
                X, w16, (1, 1), "SAME", dimension_numbers=NATIVE_DN, algorithm=algorithm
            )


@pytest.mark.parametrize("keyword", ["algoritm", "unused", "out_shardings", "kernel_dilation"])
def test_unknown_keyword_is_a_type_error_naming_it(keyword: str) -> None:
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{keyword}'"):
        jaxcps.conv_general_dilated(
            X, W, (1, 1), "SAME", dimension_numbers=NATIVE_DN, **{keyword: "cpo"}
        )


def test_keywords_are_lax_s_plus_algorithm_and_name() -> None:
    """Every parameter of the installed jax's lax.conv_general_dilated, in the same order,
    then only the keyword-only `algorithm` and `name`."""
    ours = inspect.signature(jaxcps.conv_general_dilated).parameters
    theirs = inspect.signature(lax.conv_general_dilated).parameters
    assert list(ours)[: len(theirs)] == list(theirs)
    assert list(ours)[len(theirs) :] == ["algorithm", "name"]
    assert all(ours[k].kind is inspect.Parameter.KEYWORD_ONLY for k in ("algorithm", "name"))
    assert "out_sharding" in theirs  # the keyword Flax's nnx.Conv passes


@pytest.mark.parametrize("algorithm", ["xla", "cps"])
def test_out_sharding_is_applied_as_by_lax(algorithm: str) -> None:
    mesh = jax.make_mesh((1,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "d"))
    with jax.set_mesh(mesh):  # where lax honours out_sharding
        want = lax.conv_general_dilated(
            X, W, (1, 1), "SAME", dimension_numbers=NATIVE_DN, out_sharding=sharding
        )
        got = jaxcps.conv_general_dilated(
            X,
            W,
            (1, 1),
            "SAME",
            dimension_numbers=NATIVE_DN,
            out_sharding=sharding,
            algorithm=algorithm,
        )
    assert got.sharding == want.sharding
    assert got.sharding.spec[:2] == (None, "d")
    np.testing.assert_allclose(got, want, rtol=1e-5)


#: Configurations that lax runs but that the named kernels refuse; "auto" runs them on XLA
#: (tests/test_transforms.py checks the values).
UNSUPPORTED: list[tuple[str, tuple[Any, Any], dict[str, Any], str]] = [
    ("int32", (X.astype(np.int32), W.astype(np.int32)), {}, "dtype"),
    ("int8", (X.astype(np.int8), W.astype(np.int8)), {}, "dtype"),
    ("lhs-dilation", (X, W), {"lhs_dilation": (2, 1), "padding": ((1, 1), (1, 1))}, "lhs_dilation"),
    (
        "batch-group-count",
        (X, np.ones((3, 3, 4, 8), np.float32)),
        {"batch_group_count": 2},
        "batch_group_count",
    ),
    (
        "1-d",
        (np.ones((2, 4, 9), np.float32), np.ones((8, 4, 3), np.float32)),
        {"dimension_numbers": None},
        "spatial",
    ),
    (
        "3-d",
        (np.ones((1, 2, 4, 5, 6), np.float32), np.ones((3, 2, 2, 2, 2), np.float32)),
        {"dimension_numbers": None},
        "spatial",
    ),
]


@pytest.mark.parametrize(
    "name,operands,extra,pattern", UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED]
)
def test_unsupported_for_named_kernel(
    name: str, operands: tuple[Any, Any], extra: dict[str, Any], pattern: str
) -> None:
    kwargs = {"dimension_numbers": NATIVE_DN}
    kwargs.update(extra)
    padding = kwargs.pop("padding", "SAME")
    strides = (1,) * (operands[0].ndim - 2)
    lax.conv_general_dilated(*operands, strides, padding, **kwargs)  # lax runs it
    for algorithm in FFI_ALGORITHMS:
        with pytest.raises(ValueError, match=pattern):
            jaxcps.conv_general_dilated(*operands, strides, padding, **kwargs, algorithm=algorithm)


def test_mec_runs_height_and_width_dilation() -> None:
    """MEC lowers along the width only, and runs a kernel dilation along either axis."""
    for dilation in [(2, 1), (1, 2)]:
        args = (X, W, (1, 1), "SAME")
        y = jaxcps.conv_general_dilated(
            *args, rhs_dilation=dilation, dimension_numbers=NATIVE_DN, algorithm="mec"
        )
        assert y.shape == (2, 5, 6, 8)
        want = lax_conv(*args, rhs_dilation=dilation, dimension_numbers=NATIVE_DN)
        assert_close(y, want, f"mec, rhs_dilation {dilation}")


def _conv(algorithm: str, name: str | None = None) -> Any:
    return lambda x, w: jaxcps.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=NATIVE_DN, algorithm=algorithm, name=name
    )


def _lowered(
    algorithm: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...], name: str | None = None
) -> str:
    """StableHLO of the jitted conv of abstract float32 operands: nothing is allocated or run."""
    operands = [jax.ShapeDtypeStruct(shape, np.float32) for shape in (x_shape, w_shape)]
    return jax.jit(_conv(algorithm, name)).lower(*operands).as_text()


def _operands(limit: str, size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """NHWC and HWIO shapes of a 1x1 convolution whose input width (limit "max_width") or
    channel count ("max_channels") is `size`."""
    if limit == "max_width":
        return (1, 1, size, 1), (1, 1, 1, 1)
    return (1, 1, 1, size), (1, 1, size, 1)


#: Each limit a kernel declares in its sizes, with the word its refusal names.
LIMIT_WORDS = {"max_width": "width", "max_channels": "channels"}
#: (kernel, limit) for every limit of every kernel.
LIMITS = [(a, limit) for a in FFI_ALGORITHMS for limit in LIMIT_WORDS if limit in KERNELS[a].sizes]


def test_every_kind_of_limit_is_probed() -> None:
    """Some kernel declares each limit (CPO and CPS, whose indices are 16-bit), so the test
    below runs for each."""
    assert {limit for _, limit in LIMITS} == set(LIMIT_WORDS)


@pytest.mark.parametrize("algorithm,limit", LIMITS, ids=[f"{a}-{limit}" for a, limit in LIMITS])
def test_past_a_limit_refused_when_traced(algorithm: str, limit: str) -> None:
    """One past a kernel's limit, the named kernel raises ValueError naming the size when the
    call is traced (lowered, or shape-evaluated); "auto" runs XLA, also when a plan names
    that kernel. At the limit the kernel runs."""
    size = KERNELS[algorithm].sizes[limit]
    past = _operands(limit, size + 1)
    with pytest.raises(ValueError, match=LIMIT_WORDS[limit]):
        _lowered(algorithm, *past)
    abstract = [jax.ShapeDtypeStruct(shape, np.float32) for shape in past]
    with pytest.raises(ValueError, match=LIMIT_WORDS[limit]):
        jax.eval_shape(_conv(algorithm), *abstract)
    assert "jaxcps_" not in _lowered("auto", *past)
    with jaxcps.flax.route(jaxcps.Plan.from_choices({"big": algorithm})):
        assert f"jaxcps_{algorithm}_" in _lowered("auto", *_operands(limit, 8), name="big")
        assert "jaxcps_" not in _lowered("auto", *past, name="big")
    assert f"jaxcps_{algorithm}_" in _lowered(algorithm, *_operands(limit, size))


@pytest.mark.parametrize("algorithm", BLAS)
def test_blas_size_overflow_refused_when_traced(algorithm: str) -> None:
    """2^16 x 2^16 output pixels: a GEMM dimension past the 32-bit BLAS interface is refused
    when the call is lowered, before any buffer exists; "auto" runs XLA."""
    x_shape, w_shape = (1, 2**16, 2**16, 1), (1, 1, 1, 1)
    with pytest.raises(ValueError, match="32-bit BLAS"):
        _lowered(algorithm, x_shape, w_shape)
    assert "jaxcps_" not in _lowered("auto", x_shape, w_shape)


def test_footprint_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        jaxcps.footprint(X, W.shape, (1, 1), "SAME", "xla")
    with pytest.raises(ValueError, match="window_strides"):
        jaxcps.footprint(X, W.shape, (0, 1), "SAME", "cpo")
    with pytest.raises(ValueError, match="channels"):
        jaxcps.footprint(X, (3, 3, 5, 8), (1, 1), "SAME", "im2col")
    with pytest.raises(ValueError, match="padding"):
        jaxcps.footprint(X, W.shape, (1, 1), "FULL", "mec")
