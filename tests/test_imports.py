"""The library stands apart from its tools: `import jaxcps` and `import jaxcps.flax` load
neither the benchmark and demo subpackages nor their optional dependencies (matplotlib), and
`import jaxcps` loads no Flax."""

from __future__ import annotations

import json
import subprocess
import sys

TOOLS = ("jaxcps.bench", "jaxcps.demo", "matplotlib")


def test_library_imports_no_tools(tmp_path) -> None:
    code = (
        "import json, sys\n"
        "import jaxcps\n"
        "library = sorted(sys.modules)\n"
        "import jaxcps.flax\n"
        "print(json.dumps([library, sorted(sys.modules)]))\n"
    )
    # Outside the repository, so that the installed package is imported, not the source tree.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    library, with_flax = (set(names) for names in json.loads(out.stdout.splitlines()[-1]))
    assert not library & {*TOOLS, "flax"}
    assert "flax" in with_flax and not with_flax & set(TOOLS)
