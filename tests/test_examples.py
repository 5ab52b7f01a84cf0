"""Every script in examples/ runs at a small size (as subprocesses, started together), and
prints what it promises."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

from conftest import skip_unless_allowed

from jaxcps.algorithms import ALGORITHMS

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
SMALL_MODEL = ["--image-size", "32", "--width", "0.125"]
#: script -> (extra arguments that make it small, lines or fragments its output must hold)
SCRIPTS: dict[str, tuple[list[str], list[str]]] = {
    "quickstart.py": (
        ["--size", "8", "--channels", "16"],
        [
            "layer (1, 8, 8, 16) * (3, 3, 16, 16), 90% zeros, active ISA",
            "CR vs im2col",
            *(f"{a:>9}  " for a in ALGORITHMS if a != "auto"),
        ],
    ),
    "swap_one_layer.py": (
        [],
        ["layer 'last' ran on CPO both ways; outputs match nn.Conv: (1, 32, 32, 32)"],
    ),
    "route_linen_plan.py": (
        [*SMALL_MODEL, "--candidates", "xla,cpo"],
        ["stage5_conv3", "choice", "routed output matches XLA: (1, 10)"],
    ),
    "route_nnx_plan.py": (
        [*SMALL_MODEL, "--candidates", "xla,cps"],
        ["stage4_block2/conv2", "choice", "routed output matches XLA: (1, 10)"],
    ),
    "serve_with_plan.py": (
        [*SMALL_MODEL, "--candidates", "xla,mec"],
        ["request 0 -> class", "request 2 -> class", "layers on jaxcps kernels"],
    ),
    "route_keras.py": (["--image-size", "32"], ["keys: ['cnn/stem', 'cnn/down', 'cnn/body']"]),
    "route_equinox.py": ([], ["routed output matches"]),
}
#: script -> the optional framework it needs (from the `test` extra)
REQUIRES = {"route_keras.py": "keras", "route_equinox.py": "equinox"}


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(SCRIPTS)


def test_examples_run(tmp_path):
    missing = [s for s, module in REQUIRES.items() if importlib.util.find_spec(module) is None]
    plan = tmp_path / "plan.json"
    procs = {}
    for script, (extra, _) in SCRIPTS.items():
        if script in missing:
            continue
        if script == "serve_with_plan.py":
            extra = [*extra, "--plan", str(plan)]
        procs[script] = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    failures = []
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        expected = SCRIPTS[script][1] + (
            [f"plan {plan}: "] if script == "serve_with_plan.py" else []
        )
        lacking = [text for text in expected if text not in out]
        if proc.returncode != 0 or lacking:
            failures.append(
                f"{script} exited {proc.returncode}, output lacks {lacking}:\n"
                f"{out[-2000:]}\n{err[-3000:]}"
            )
    assert not failures, "\n\n".join(failures)
    assert plan.exists()
    if missing:
        skip_unless_allowed(f"not installed, so not run: {', '.join(missing)}")
