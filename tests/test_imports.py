"""The library stands apart from its tools: `import jaxcps` and `import jaxcps.flax` load
neither the benchmark and demo subpackages nor their optional dependencies (matplotlib), and
`import jaxcps` loads no Flax."""

from __future__ import annotations

import json
import subprocess
import sys

TOOLS = ("jaxcps.bench", "jaxcps.demo", "matplotlib")


def _loaded_after(statement: str, tmp_path) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    # Outside the repository, so that the installed package is imported, not the source tree.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_library_imports_no_tools(tmp_path) -> None:
    loaded = _loaded_after("import jaxcps", tmp_path)
    assert not loaded & {*TOOLS, "flax"}
    loaded = _loaded_after("import jaxcps.flax", tmp_path)
    assert "flax" in loaded and not loaded & set(TOOLS)
