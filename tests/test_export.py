"""`jax.export` of programs that use jaxcps: `jaxcps.export_checks()` opts in exactly jaxcps's
FFI targets, and a serialized program runs in a fresh process that has imported jaxcps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import (
    NATIVE_DN,
    TARGETS,
    assert_close,
    lax_conv,
    skip_unless_allowed,
    sparse_activation,
    weights,
)

import jaxcps

#: The targets jaxcps registers (one per kernel of ffi/kernels.inc, and the one for prepared
#: weights), spelled out.
FFI_TARGETS = {f"jaxcps_{k}_f32" for k in TARGETS} | {"jaxcps_prepared_f32"}


def two_layers(x: jax.Array, w1: jax.Array, w2: jax.Array) -> jax.Array:
    """A strided cps conv, a ReLU and a grouped cpo conv."""
    h = jaxcps.conv_general_dilated(
        x, w1, (2, 1), "SAME", dimension_numbers=NATIVE_DN, algorithm="cps"
    )
    h = jax.nn.relu(h)
    return jaxcps.conv_general_dilated(
        h,
        w2,
        (1, 1),
        ((1, 0), (0, 1)),
        dimension_numbers=NATIVE_DN,
        feature_group_count=2,
        algorithm="cpo",
    )


def two_layers_lax(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> jax.Array:
    h = jax.nn.relu(lax_conv(x, w1, (2, 1), "SAME", dimension_numbers=NATIVE_DN))
    return lax_conv(
        h, w2, (1, 1), ((1, 0), (0, 1)), dimension_numbers=NATIVE_DN, feature_group_count=2
    )


@pytest.fixture
def operands(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        sparse_activation(rng, (2, 9, 8, 3), 0.6),
        weights(rng, (3, 3, 3, 6)),
        weights(rng, (2, 2, 3, 4)),
    )


def test_checks_name_exactly_jaxcps_targets() -> None:
    checks = jaxcps.export_checks()
    assert {check.is_custom_call() for check in checks} == FFI_TARGETS
    assert len(checks) == len(FFI_TARGETS)


def test_export_needs_the_checks_and_they_allow_no_other_target(operands) -> None:
    with pytest.raises(ValueError, match="jaxcps_cps_f32"):
        jax.export.export(jax.jit(two_layers))(*operands)
    other = jax.jit(
        lambda x: jax.ffi.ffi_call("not_a_jaxcps_target", jax.ShapeDtypeStruct(x.shape, x.dtype))(x)
    )
    with pytest.raises(ValueError, match="not_a_jaxcps_target"):
        jax.export.export(other, disabled_checks=jaxcps.export_checks())(operands[0])


#: Deserializes the program in argv[1] and calls it on the arrays in argv[2]; prints the
#: result's path. Imports jaxcps unless argv[3] says not to.
LOADER = textwrap.dedent("""
    import sys
    import numpy as np
    import jax
    if sys.argv[3] == "import":
        import jaxcps
    exported = jax.export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
    arrays = np.load(sys.argv[2])
    y = exported.call(*(arrays[k] for k in ("x", "w1", "w2")))
    np.save(sys.argv[2] + ".out.npy", np.asarray(y))
    print("ok")
    """)


def test_serialized_program_runs_in_a_fresh_process(operands, tmp_path) -> None:
    try:
        import flatbuffers  # noqa: F401  (jax.export's serialization needs it)
    except ImportError:
        skip_unless_allowed("jax.export serialization needs the flatbuffers package")
    exported = jax.export.export(jax.jit(two_layers), disabled_checks=jaxcps.export_checks())(
        *operands
    )
    program = tmp_path / "two_layers.jax"
    program.write_bytes(exported.serialize())
    arrays = tmp_path / "operands.npz"
    np.savez(arrays, **dict(zip(("x", "w1", "w2"), operands)))
    # Both processes at once; outside the repository, so the installed jaxcps is imported.
    procs = {
        how: subprocess.Popen(
            [sys.executable, "-c", LOADER, str(program), str(arrays), how],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.abspath(__file__)),
            env=dict(os.environ, JAX_PLATFORMS="cpu"),
        )
        for how in ("import", "no-import")
    }
    results = {
        how: (*proc.communicate(timeout=120), proc.returncode) for how, proc in procs.items()
    }
    out, err, code = results["import"]
    assert code == 0 and out.strip() == "ok", err[-3000:]
    got = np.load(str(arrays) + ".out.npy")
    assert_close(got, two_layers_lax(*operands), "exported cps + cpo program")
    # Without `import jaxcps`, XLA does not know the targets.
    _, err, code = results["no-import"]
    assert code != 0 and "jaxcps_" in err, err[-3000:]
