"""Inputs that could crash a kernel end in a Python exception that names the problem.

`test_errors.py` covers what Python refuses before any kernel runs. The probes here reach C++:
FFI calls that bypass the Python checks (`DIRECT_PROBES`, the one table of them: the handlers
must re-check every attribute and shape),
zero-size and 32-bit-overflowing shapes (carried by zero-size buffers, so nothing huge is
allocated), outputs too large to allocate, and workspaces over the limit (lowered with
JAXCPS_MAX_WORKSPACE_BYTES, so a small input reaches it). They run in subprocesses: a crash is
a failed test here, not a dead test run. Each subprocess prints one JSON line per probe as it
finishes, so a crash names the probe it died in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import BLAS, FFI_ALGORITHMS, TARGETS

BIG = 2**40  # beyond every range check, and beyond int32

# The one table of direct FFI calls that bypass the Python checks: (id, x shape, w shape,
# attribute changes, output shape or None for the right one, expected outcome), run on every
# target. The outcome is "ok", or a regex that the message of the JaxRuntimeError raised must
# match. Attribute values are lists (int64 arrays), (dtype, list) pairs, ints (int64 scalars),
# or None (attribute left out); "dtype" sets the operands' dtype. Eager ffi_call caches
# executables by attribute value (an int32 attribute equal to a valid int64 one would reuse its
# executable), so no two probes share shapes and attribute values.
DIRECT_PROBES: list[tuple[str, tuple, tuple, dict, Any, str]] = [
    (
        "strides-one-entry",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(window_strides=[1]),
        (1, 3, 3, 2),
        "window_strides must have 2 entries",
    ),
    (
        "strides-three-entries",
        (1, 7, 5, 2),
        (1, 1, 2, 3),
        dict(window_strides=[1, 1, 1]),
        (1, 7, 5, 3),
        "window_strides must have 2",
    ),
    (
        "padding-three-entries",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(padding=[0, 0, 0]),
        None,
        "padding must have 4 entries",
    ),
    (
        "dilation-one-entry",
        (1, 8, 6, 2),
        (1, 1, 2, 3),
        dict(rhs_dilation=[1]),
        (1, 8, 6, 3),
        "rhs_dilation must have 2",
    ),
    (
        "dilation-three-entries",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(rhs_dilation=[1, 1, 1]),
        None,
        "rhs_dilation must have 2 entries",
    ),
    (
        "stride-zero",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(window_strides=[0, 1]),
        (1, 3, 3, 2),
        r"window_strides\[0\] = 0",
    ),
    (
        "stride-negative",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(window_strides=[1, -3]),
        (1, 3, 3, 2),
        r"window_strides\[1\] = -3",
    ),
    (
        "stride-huge",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(window_strides=[BIG, 1]),
        (1, 1, 3, 2),
        r"window_strides\[0\]",
    ),
    (
        "dilation-zero",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(rhs_dilation=[1, 0]),
        (1, 3, 3, 2),
        r"rhs_dilation\[1\] = 0",
    ),
    (
        "dilation-huge",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(rhs_dilation=[BIG, 1]),
        (1, 1, 3, 2),
        r"rhs_dilation\[0\]",
    ),
    (
        "groups-zero",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(feature_group_count=0),
        (1, 3, 3, 2),
        "feature_group_count = 0",
    ),
    (
        "groups-negative",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(feature_group_count=-2),
        (1, 3, 3, 2),
        "feature_group_count = -2",
    ),
    (
        "groups-not-dividing-channels",
        (1, 5, 5, 4),
        (3, 3, 1, 3),
        dict(feature_group_count=3),
        (1, 3, 3, 3),
        "feature_group_count = 3",
    ),
    (
        "groups-not-dividing-outputs",
        (1, 5, 6, 4),
        (1, 1, 2, 5),
        dict(feature_group_count=2),
        (1, 5, 6, 5),
        "feature_group_count",
    ),
    ("channel-mismatch", (1, 5, 5, 4), (3, 3, 3, 2), {}, (1, 3, 3, 2), "kernel in-channels"),
    (
        "padding-huge-negative",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(padding=[-BIG, 0, 0, 0]),
        (1, 1, 3, 2),
        "padding",
    ),
    (
        "padding-huge-positive",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(padding=[0, BIG, 0, 0]),
        (1, 1, 3, 2),
        "padding",
    ),
    (
        "padding-crops-past-height",
        (1, 4, 5, 2),
        (1, 1, 2, 3),
        dict(padding=[-3, -2, 0, 0]),
        (1, 1, 5, 3),
        r"padding\[0\] = .*negative padding larger than the height",
    ),
    (
        "padding-crops-past-width",
        (1, 5, 5, 4),
        (1, 1, 4, 2),
        dict(padding=[0, 0, -6, 0]),
        (1, 5, 1, 2),
        r"padding\[1\] = .*negative padding larger than the width",
    ),
    ("output-shape-mismatch", (1, 5, 5, 4), (3, 3, 4, 2), {}, (1, 3, 4, 2), "output buffer shape"),
    (
        "output-channels-mismatch",
        (1, 5, 6, 2),
        (3, 3, 2, 4),
        {},
        (1, 3, 4, 5),
        "output buffer shape",
    ),
    ("kernel-height-zero", (1, 5, 5, 4), (0, 3, 4, 2), {}, (1, 6, 3, 2), "kernel_height = 0"),
    # Decoding failures: an int32 attribute, missing attributes, wrong dtype, wrong rank.
    (
        "int32-attribute",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(window_strides=("int32", [2, 3])),
        (1, 2, 1, 2),
        "decode|attribute",
    ),
    (
        "missing-feature-group-count",
        (1, 5, 5, 4),
        (3, 3, 4, 2),
        dict(feature_group_count=None),
        None,
        "attribute",
    ),
    (
        "missing-rhs-dilation",
        (1, 9, 9, 2),
        (1, 1, 2, 3),
        dict(rhs_dilation=None),
        None,
        "attribute",
    ),
    ("float16-operands", (1, 5, 5, 4), (3, 3, 4, 2), dict(dtype="float16"), None, "decode"),
    ("rank-3-operands", (5, 5, 4), (3, 3, 4, 2), {}, (3, 3, 2), "decode"),
    # Shapes whose index products overflow 32 bits, carried by zero-size buffers so nothing
    # huge is allocated. XLA runs no custom call whose result is empty, so these only show
    # that such shapes pass through cleanly; the probes with real buffers are API_PROBES.
    ("height-2^31-empty", (0, 2**31, 1, 4), (1, 1, 4, 2), {}, (0, 2**31, 1, 2), "ok"),
    ("width-over-uint16-empty", (0, 3, 70000, 4), (3, 3, 4, 2), {}, (0, 1, 69998, 2), "ok"),
    (
        "gemm-rows-over-int32-empty",
        (0, 2**16, 2**16, 1),
        (1, 1, 1, 1),
        {},
        (0, 2**16, 2**16, 1),
        "ok",
    ),
]

# Public-API probes: (id, expected outcome), run with every user-facing kernel. The outcome is
# "ok" (equal to lax), a regex the error must match, or a dict from kernel name to either,
# with the key "default" for the kernels it does not name.
API_PROBES: list[tuple[str, Any]] = [
    ("zero-batch", "ok"),
    ("zero-height", "ok"),
    ("zero-input-channels", "ok"),
    ("zero-output-channels", "ok"),
    # Stride 2^30 and padding 2^31-1 on a 5x5 input: three output rows, whose input row
    # indices are beyond int32. MEC would lower all the padding rows. The oracle is a direct
    # sum in NumPy: XLA:CPU itself returns garbage (values ~1e25) in the last row here.
    ("indices-past-int32", {"mec": "32-bit BLAS|workspace limit", "default": "ok"}),
    # A stride of 2^31 is beyond the kernels' range checks (lax runs it).
    ("stride-2^31", r"window_strides\[0\] = 2147483648"),
    # (2^20 + 4)^2 output pixels: the BLAS kernels refuse the GEMM size when traced, the others
    # reach the allocation of the 4 TB output.
    (
        "output-too-large-to-allocate",
        {
            **{a: "ValueError: .*32-bit BLAS" for a in BLAS},
            "default": "RESOURCE_EXHAUSTED|out of memory|Out of memory",
        },
    ),
    ("huge-shapes-lower-and-compile", "ok"),
]

WORKSPACE_LIMIT = 65536  # bytes; every kernel's workspace for the input below exceeds it


def _worker(kind: str) -> None:
    import re

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    import jaxcps
    from jaxcps import _targets

    def report(name: str, expected: Any, run) -> None:
        try:
            outcome = run()
            message = "ok"
        except Exception as e:  # noqa: BLE001 (every exception is an outcome to check)
            outcome, message = None, f"{type(e).__name__}: {e}"
        if expected == "ok":
            passed = message == "ok" and outcome is not False
        else:
            passed = message != "ok" and re.search(expected, message) is not None
        print(json.dumps(dict(name=name, passed=passed, detail=message[:400])), flush=True)

    def direct(algorithm, x_shape, w_shape, changes, out_shape):
        dtype = changes.get("dtype", "float32")
        attrs = dict(
            window_strides=np.asarray([1, 1], np.int64),
            padding=np.asarray([0, 0, 0, 0], np.int64),
            rhs_dilation=np.asarray([1, 1], np.int64),
            feature_group_count=np.int64(1),
        )
        for key, value in changes.items():
            if key == "dtype":
                continue
            if value is None:
                del attrs[key]
            elif isinstance(value, tuple):
                attrs[key] = np.asarray(value[1], value[0])
            elif isinstance(value, list):
                attrs[key] = np.asarray(value, np.int64)
            else:
                attrs[key] = np.int64(value)
        if out_shape is None:
            out_shape = (
                x_shape[0],
                x_shape[1] - w_shape[0] + 1,
                x_shape[2] - w_shape[1] + 1,
                w_shape[3],
            )
        x = jnp.zeros(x_shape, dtype)
        w = jnp.ones(w_shape, dtype)
        call = jax.ffi.ffi_call(
            _targets.target_name(algorithm), jax.ShapeDtypeStruct(out_shape, jnp.float32)
        )
        return jax.block_until_ready(call(x, w, **attrs)).shape == tuple(out_shape)

    dn = ("NHWC", "HWIO", "NHWC")

    def direct_sum(x, w, strides, padding):
        n, h, wd, _ = x.shape
        kh, kw, _, o = w.shape
        (pt, pb), (pl, pr) = padding
        oh = (h + pt + pb - kh) // strides[0] + 1
        ow = (wd + pl + pr - kw) // strides[1] + 1
        y = np.zeros((n, oh, ow, o), np.float64)
        for i, j, a, b in np.ndindex(oh, ow, kh, kw):
            r, c = i * strides[0] - pt + a, j * strides[1] - pl + b
            if 0 <= r < h and 0 <= c < wd:
                y[:, i, j] += x[:, r, c] @ w[a, b]
        return y

    def against_direct_sum(algorithm, strides, padding):
        rng = np.random.default_rng(0)
        x = np.maximum(rng.standard_normal((1, 5, 5, 2)), 0).astype(np.float32)
        w = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
        y = jaxcps.conv_general_dilated(
            x, w, strides, padding, dimension_numbers=dn, algorithm=algorithm
        )
        want = direct_sum(x, w, strides, padding)
        return y.shape == want.shape and bool(np.allclose(y, want, atol=1e-5))

    def against_lax(algorithm, x_shape, w_shape, **conv):
        conv = dict(dict(window_strides=(1, 1), padding="SAME"), **conv)
        rng = np.random.default_rng(0)
        x = np.maximum(rng.standard_normal(x_shape), 0).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        y = jaxcps.conv_general_dilated(x, w, **conv, dimension_numbers=dn, algorithm=algorithm)
        want = lax.conv_general_dilated(x, w, **conv, dimension_numbers=dn)
        return y.shape == want.shape and bool(np.allclose(y, want, atol=1e-5))

    if kind == "direct":
        for name, x_shape, w_shape, changes, out_shape, expected in DIRECT_PROBES:
            # A clean error is a JaxRuntimeError (INVALID_ARGUMENT) naming the parameter.
            want = expected if expected == "ok" else rf"(?s)^JaxRuntimeError: .*(?:{expected})"
            for algorithm in TARGETS:
                report(
                    f"{name}/{algorithm}",
                    want,
                    lambda: direct(algorithm, x_shape, w_shape, changes, out_shape),
                )
    elif kind == "api":
        huge_x = jax.ShapeDtypeStruct((64, 2**15, 2**15, 64), jnp.float32)
        huge_w = jax.ShapeDtypeStruct((3, 3, 64, 64), jnp.float32)

        def lower_huge(algorithm):
            f = jax.jit(
                lambda x, w: jaxcps.conv_general_dilated(
                    x, w, (1, 1), "SAME", dimension_numbers=dn, algorithm=algorithm
                )
            )
            f.lower(huge_x, huge_w).compile()
            return jax.eval_shape(f, huge_x, huge_w).shape == huge_x.shape

        probes = {
            "zero-batch": lambda a: against_lax(a, (0, 6, 5, 3), (3, 3, 3, 4)),
            "zero-height": lambda a: against_lax(a, (2, 0, 5, 3), (3, 3, 3, 4)),
            "zero-input-channels": lambda a: against_lax(a, (2, 6, 5, 0), (3, 3, 0, 4)),
            "zero-output-channels": lambda a: against_lax(a, (2, 6, 5, 3), (3, 3, 3, 0)),
            "indices-past-int32": lambda a: against_direct_sum(
                a, (2**30, 1), ((0, 2**31 - 1), (1, 1))
            ),
            "stride-2^31": lambda a: against_direct_sum(a, (2**31, 1), ((0, 2**31), (1, 1))),
            "output-too-large-to-allocate": lambda a: jax.block_until_ready(
                jaxcps.conv_general_dilated(
                    np.ones((1, 4, 4, 2), np.float32),
                    np.ones((1, 1, 2, 1), np.float32),
                    (1, 1),
                    ((0, 2**20), (0, 2**20)),
                    dimension_numbers=dn,
                    algorithm=a,
                )
            ),
            "huge-shapes-lower-and-compile": lower_huge,
        }
        for name, expected in API_PROBES:
            for algorithm in FFI_ALGORITHMS:
                if isinstance(expected, dict):
                    want = expected.get(algorithm, expected["default"])
                else:
                    want = expected
                report(f"{name}/{algorithm}", want, lambda: probes[name](algorithm))
    elif kind == "workspace":
        x = np.maximum(np.random.default_rng(0).standard_normal((1, 128, 128, 32)), 0)
        x = x.astype(np.float32)
        w = np.ones((3, 3, 32, 8), np.float32)
        for algorithm in FFI_ALGORITHMS:
            report(
                f"over-limit/{algorithm}",
                "workspace limit of 65536",
                lambda: jax.block_until_ready(
                    jaxcps.conv_general_dilated(
                        x, w, (1, 1), "SAME", dimension_numbers=dn, algorithm=algorithm
                    )
                ),
            )
            # The process is unharmed: a call within the limit still runs.
            report(
                f"after-limit/{algorithm}",
                "ok",
                lambda: against_lax(algorithm, (1, 4, 4, 2), (3, 3, 2, 2)),
            )


def _run_worker(kind: str, extra_env: dict[str, str] | None = None) -> dict[str, dict]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", **(extra_env or {}))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind],
        capture_output=True,
        check=False,
        text=True,
        timeout=300,
        env=env,
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            results[entry["name"]] = entry
    last = list(results)[-1] if results else "none"
    results["__process__"] = dict(returncode=proc.returncode, last=last, stderr=proc.stderr[-3000:])
    return results


@pytest.fixture(scope="module")
def direct_results() -> dict[str, dict]:
    return _run_worker("direct")


@pytest.fixture(scope="module")
def api_results() -> dict[str, dict]:
    return _run_worker("api")


@pytest.fixture(scope="module")
def workspace_results() -> dict[str, dict]:
    return _run_worker("workspace", {"JAXCPS_MAX_WORKSPACE_BYTES": str(WORKSPACE_LIMIT)})


def _check(results: dict[str, dict], name: str) -> None:
    process = results["__process__"]
    assert process["returncode"] == 0, (
        f"probe process died with {process['returncode']} after probe {process['last']!r}:\n"
        f"{process['stderr']}"
    )
    assert name in results, f"probe {name} did not report"
    assert results[name]["passed"], f"{name}: {results[name]['detail']}"


@pytest.mark.parametrize("algorithm", TARGETS)
@pytest.mark.parametrize("probe", [p[0] for p in DIRECT_PROBES])
def test_direct_ffi_probe(direct_results: dict, probe: str, algorithm: str) -> None:
    _check(direct_results, f"{probe}/{algorithm}")


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
@pytest.mark.parametrize("probe", [p[0] for p in API_PROBES])
def test_public_api_probe(api_results: dict, probe: str, algorithm: str) -> None:
    _check(api_results, f"{probe}/{algorithm}")


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_workspace_over_limit_is_a_clean_error(workspace_results: dict, algorithm: str) -> None:
    _check(workspace_results, f"over-limit/{algorithm}")
    _check(workspace_results, f"after-limit/{algorithm}")


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(sys.argv[2])
