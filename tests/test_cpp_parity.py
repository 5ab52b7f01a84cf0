"""The C++ kernel parity test (tests/cpp/kernel_parity.cc), built with the system's compiler
and run under each instruction set of the sparse kernels.

It compares every kernel with the naive reference in C++ alone, on one thread and on a
std::thread pool: the same program that tools/check_aarch64.sh cross-compiles and runs under
qemu. The build (CMake, the kernels without the Python extension) takes about a minute. The
same build's objects are read to check that the inner loops compute in registers.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import scipy_openblas32
from conftest import ISAS, skip_unless_allowed

from jaxcps import _targets

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kernel_parity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel_parity executable, built in a temporary folder."""
    if shutil.which("cmake") is None:
        skip_unless_allowed("cmake is not on PATH (pip install cmake)")
    build = tmp_path_factory.mktemp("kernel_parity")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    for command in (
        [
            "cmake",
            "-S",
            str(ROOT / "tests" / "cpp"),
            "-B",
            str(build),
            *generator,
            f"-DOPENBLAS_INCLUDE_DIR={scipy_openblas32.get_include_dir()}",
            f"-DOPENBLAS_LIB_DIR={scipy_openblas32.get_lib_dir()}",
        ],
        ["cmake", "--build", str(build), "--target", "kernel_parity", "-j", str(os.cpu_count())],
    ):
        proc = subprocess.run(command, check=False, capture_output=True, text=True)
        output = proc.stdout[-3000:] + proc.stderr[-3000:]
        assert proc.returncode == 0, f"{' '.join(command)} failed:\n{output}"
    return build / "kernel_parity"


@pytest.mark.parametrize("isa", ISAS)
def test_kernel_parity(kernel_parity: Path, isa: str) -> None:
    if isa not in _targets.supported_isas():
        pytest.skip(f"this CPU does not support {isa}")  # hardware-dependent, allowed in CI
    env = {**os.environ, "JAXCPS_ISA": isa}
    proc = subprocess.run(
        [str(kernel_parity)], check=False, capture_output=True, text=True, env=env, timeout=300
    )
    report = proc.stdout.splitlines()
    assert proc.returncode == 0, "\n".join(report[-40:]) + proc.stderr[-2000:]
    assert report[0].startswith(f"kernel_parity: sparse kernels on {isa} "), report[0]
    assert report[-1].endswith(" 0 mismatches"), report[-1]


# The sparse kernels' inner loops (and what the compiler may leave out of line from them). CPS
# is not among them: a row of its 64-channel tiles fills the 16 SSE2 registers, and its 1-D run
# kernel holds KW such rows, so with SSE2 and AVX2 it reads weights from L1 by design.
HOT_LOOPS = ("DirectBand", "DirectRows", "DirectBlock", "DirectSegments", "CpoBand", "GatherR")
# Vector arithmetic with an operand on the stack: an accumulator or weight row kept in memory.
STACK_ARITHMETIC = re.compile(r"\s(v?f?n?m(?:add|sub|ul)\w*p[sd]|v?addp[sd])\s.*\(%rsp[,)]")


@pytest.mark.parametrize("isa", ISAS)
def test_inner_loops_compute_in_registers(kernel_parity: Path, isa: str) -> None:
    """No multiply-add of the sparse inner loops reads the stack, for every compiled x86 ISA.

    A vector type wider than the ISA's registers, or a loop the compiler does not unroll, keeps
    accumulators in memory with every result still right (docs/design.md, section 2): only the
    assembly shows it.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("reads x86-64 assembly")  # the architecture is the machine's, allowed in CI
    objdump = shutil.which("objdump")
    if objdump is None:
        skip_unless_allowed("objdump (binutils) is not on PATH")
    (obj,) = kernel_parity.parent.rglob(f"tile_kernels_{isa}.cc.o")
    listing = subprocess.run(
        [objdump, "-d", "-C", "--no-show-raw-insn", str(obj)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    functions = re.split(r"^[0-9a-f]+ <(.*)>:$", listing, flags=re.MULTILINE)[1:]
    hot = {
        name: body
        for name, body in zip(functions[::2], functions[1::2], strict=True)
        if any(loop in name for loop in HOT_LOOPS)
    }
    assert all(any(loop in n for n in hot) for loop in ("DirectSegments", "CpoBand")), list(hot)
    offenders = {
        name: [line.strip() for line in body.splitlines() if STACK_ARITHMETIC.search(line)]
        for name, body in hot.items()
    }
    assert not any(offenders.values()), {n: lines[:5] for n, lines in offenders.items() if lines}
