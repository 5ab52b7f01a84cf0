"""Every script in examples/ runs at a small size (as subprocesses, started together)."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

from conftest import skip_unless_allowed

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
#: script -> extra arguments that make it small
SCRIPTS = {
    "swap_one_layer.py": [],
    "route_linen_plan.py": ["--image-size", "32", "--width", "0.125", "--candidates", "xla,cpo"],
    "route_nnx_plan.py": ["--image-size", "32", "--width", "0.125", "--candidates", "xla,cps"],
    "serve_with_plan.py": ["--image-size", "32", "--width", "0.125", "--candidates", "xla,mec"],
    "route_keras.py": ["--image-size", "32"],
    "route_equinox.py": [],
}
#: script -> the optional framework it needs (from the `test` extra)
REQUIRES = {"route_keras.py": "keras", "route_equinox.py": "equinox"}
#: script -> what it prints when its check passed
PRINTS = {
    "route_keras.py": "keys: ['cnn/stem', 'cnn/down', 'cnn/body']",
    "route_equinox.py": "routed output matches",
}


def test_examples_run(tmp_path):
    missing = [s for s, module in REQUIRES.items() if importlib.util.find_spec(module) is None]
    procs = {}
    for script, extra in SCRIPTS.items():
        if script in missing:
            continue
        if script == "serve_with_plan.py":
            extra = [*extra, "--plan", str(tmp_path / "plan.json")]
        procs[script] = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    failures = []
    for script, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0 or PRINTS.get(script, "") not in out:
            failures.append(f"{script} exited {proc.returncode}:\n{out[-2000:]}\n{err[-3000:]}")
    assert not failures, "\n\n".join(failures)
    assert (tmp_path / "plan.json").exists()
    if missing:
        skip_unless_allowed(f"not installed, so not run: {', '.join(missing)}")
