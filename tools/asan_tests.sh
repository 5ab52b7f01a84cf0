#!/usr/bin/env bash
# Runs the test suite against jaxcps built with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option JAXCPS_SANITIZE), in a venv of its own so the normal install is untouched.
#
#   tools/asan_tests.sh [pytest args...]        e.g. tools/asan_tests.sh -x -k kernels
#
# JAXCPS_ASAN_VENV picks the venv (default: <repo>/.venv-asan, created on first use).
# Python is not instrumented, so the ASan runtime is preloaded; leak checking is off because
# the interpreter and jaxlib keep allocations alive until exit on purpose.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${JAXCPS_ASAN_VENV:-$root/.venv-asan}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Build requirements are installed first: the sanitized build runs without isolation so that it
# compiles against the jaxlib headers of the jax it will run with.
"$venv/bin/pip" install -q scikit-build-core nanobind "jax>=0.10.2" scipy-openblas32
"$venv/bin/pip" install -q --no-build-isolation \
  -C cmake.define.JAXCPS_SANITIZE=ON -C build-dir=build/asan "$root[test]"

asan_runtime="$("${CXX:-g++}" -print-file-name=libasan.so)"
export LD_PRELOAD="$asan_runtime${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
# The installed (sanitized) jaxcps, not the source tree: run from outside the repo root.
cd "$root/tests"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" "$root/tests"
