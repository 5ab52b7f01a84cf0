#!/usr/bin/env bash
# Installs jaxcps as a user gets it (`pip install .`, build isolation: compiled against the FFI
# headers of the floor jaxlib that pyproject.toml's build requirements pin) into a fresh venv
# per jax release, with the test extra (pip picks the newest Flax, Keras, Equinox and Haiku
# that release allows), and runs the core tests (no framework) and then the framework tests.
#
#   tools/check_jax_versions.sh                      # the floor, and the newest release
#   tools/check_jax_versions.sh 3.11:0.9.2 3.12:     # python:jax pairs; empty jax = newest
#
# The default pairs: the floor on Python 3.11, and the newest release allowed by
# pyproject.toml on Python 3.12 (jax 0.11 and later need Python >= 3.12). Venvs go to
# build/jax-<jax>-py<python>, and are made again on every run. Prints one summary line per pair;
# exit status 0 when every pair passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
floor="$(sed -n 's/^ *"jax==\([0-9.]*\)",$/\1/p' "$root/pyproject.toml")"
[ -n "$floor" ] || { echo "check_jax_versions: no jax==<floor> in pyproject.toml" >&2; exit 2; }
[ $# -gt 0 ] || set -- "3.11:$floor" "3.12:"

core=(test_parity.py test_transforms.py test_autodiff.py test_sharding.py test_export.py
      test_routing.py test_ffi_targets.py test_nonfinite.py test_geometry.py test_robustness.py
      test_concurrency.py test_footprint.py test_builders.py test_plan.py test_resources.py)
frameworks=(test_flax.py test_errors.py test_imports.py test_select.py test_frameworks.py)

# python<version> from PATH, else from pyenv's installed versions.
find_python() {
  if "python$1" -c '' 2>/dev/null; then echo "python$1"; return; fi
  local candidate
  for candidate in "$(pyenv root 2>/dev/null)/versions/$1".*/bin/python; do
    if [ -x "$candidate" ]; then echo "$candidate"; return; fi
  done
  echo "check_jax_versions: no python$1 found" >&2
  return 1
}

summary=()
status=0
for pair in "$@"; do
  python="$(find_python "${pair%%:*}")"
  jax="${pair#*:}"
  venv="$root/build/jax-${jax:-newest}-py${pair%%:*}"
  start=$SECONDS
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pins=()
  [ -n "$jax" ] && pins=("jax==$jax" "jaxlib==$jax")
  # A build folder of its own, as in a fresh clone.
  "$venv/bin/pip" install -q -C build-dir="$venv/build" "$root[test]" "${pins[@]}"
  installed="$("$venv/bin/python" -c \
    'import jax, flax; print(f"jax {jax.__version__}, flax {flax.__version__}")')"
  install_s=$((SECONDS - start))
  result=passed
  pytest=("$venv/bin/python" -m pytest -q -p no:cacheprovider -c "$root/pyproject.toml"
          --rootdir "$root")
  # From tests/, so that the installed jaxcps is imported, not the source tree.
  (cd "$root/tests" && "${pytest[@]}" "${core[@]}" && "${pytest[@]}" "${frameworks[@]}") ||
    { result=FAILED; status=1; }
  tests_s=$((SECONDS - start - install_s))
  summary+=("python ${pair%%:*}, $installed: $result (install $install_s s, tests $tests_s s)")
done
printf 'check_jax_versions: %s\n' "${summary[@]}"
exit $status
