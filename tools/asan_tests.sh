#!/usr/bin/env bash
# Runs the test suite against jaxcps built with AddressSanitizer + UndefinedBehaviorSanitizer
# (CMake option JAXCPS_SANITIZE), in a venv of its own so the normal install is untouched.
#
#   tools/asan_tests.sh [pytest args...]     default: tests/ but the files named below
#   tools/asan_tests.sh -x test_parity.py    (test paths are relative to tests/)
#
# JAXCPS_ASAN_VENV picks the venv (default: <repo>/.venv-asan, created on first use).
# Python is not instrumented, so the ASan runtime is preloaded, and libstdc++ with it (ASan must
# see libstdc++ at start-up to intercept C++ exceptions thrown by jaxlib). Leak checking is off
# because the interpreter and jaxlib keep allocations alive until exit on purpose.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${JAXCPS_ASAN_VENV:-$root/.venv-asan}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# Build requirements are installed first: the sanitized build runs without isolation so that it
# compiles against the jaxlib headers of the jax it will run with.
"$venv/bin/pip" install -q scikit-build-core nanobind "jax>=0.8.2,<0.13" scipy-openblas32
"$venv/bin/pip" install -q --no-build-isolation \
  -C cmake.define.JAXCPS_SANITIZE=ON -C build-dir=build/asan "$root[test]"

asan_runtime="$("${CXX:-g++}" -print-file-name=libasan.so)"
cxx_runtime="$("${CXX:-g++}" -print-file-name=libstdc++.so)"
export LD_PRELOAD="$asan_runtime:$cxx_runtime${LD_PRELOAD:+:$LD_PRELOAD}"
# allocator_may_return_null: an impossible allocation (a test asks XLA for a 4 TB output)
# must fail as it does without ASan, with an error, not abort the process.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
# Probing for TPU plugins aborts under the preloaded runtime; jaxcps is CPU-only anyway.
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
# The installed (sanitized) jaxcps, not the source tree: run from outside the repo root.
cd "$root/tests"
# Left out by default: test_memory.py (under ASan, RSS measures ASan's quarantine of freed
# blocks: it grew 12-80 MiB over 600 calls, not jaxcps) and test_peers.py (other engines;
# OpenVINO's TBB is loaded with RTLD_DEEPBIND, which the ASan runtime refuses), and the
# whole-model tests, test_frameworks.py (Flax linen, Keras, Equinox, Haiku), test_demo.py and
# test_examples.py: they make the same kernel calls as the tests that stay, at 100 s of the
# plain suite.
if [ $# -eq 0 ]; then
  set -- "$root/tests"
  for left_out in test_memory test_peers test_frameworks test_demo test_examples; do
    set -- "$@" --ignore="$root/tests/$left_out.py"
  done
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
