#!/usr/bin/env bash
# Cross-compiles the kernels and the C++ parity test (tests/cpp/kernel_parity.cc) for aarch64
# Linux and runs it under qemu-user: every kernel against the naive reference, the sparse ones
# on their NEON tile kernels, im2col and MEC on the aarch64 OpenBLAS of the scipy-openblas32
# wheel (the library an aarch64 install of jaxcps loads). No Python extension, no JAX.
#
#   tools/check_aarch64.sh            exit status 0 when every kernel matches
#
# Built and checked twice: with GCC (g++-aarch64-linux-gnu) and with clang
# (--target=aarch64-linux-gnu, on the same aarch64 C/C++ runtime). What is missing is installed
# with apt-get (Debian/Ubuntu, as root): the cross compiler, clang, qemu-user. The aarch64
# OpenBLAS comes from PyPI. Build trees go to build/aarch64-<compiler>.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sysroot=/usr/aarch64-linux-gnu
start=$SECONDS

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v clang++ >/dev/null || missing+=(clang)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
  echo "check_aarch64: apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# The aarch64 scipy-openblas32 wheel, unpacked: its headers to compile against, its library to
# run with. pip picks the newest wheel for the platform; nothing is installed.
openblas="$root/build/aarch64-openblas"
if [ ! -d "$openblas/scipy_openblas32" ]; then
  mkdir -p "$openblas"
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 \
    -d "$openblas" scipy-openblas32
  python3 -m zipfile -e "$openblas"/scipy_openblas32-*.whl "$openblas"
fi

# Builds tests/cpp/kernel_parity with one compiler and runs it. The emulated CPU is a
# Neoverse N1 (AWS Graviton2, Ampere Altra): NEON only. qemu's default "max" CPU has SME, on
# which this OpenBLAS picks its ARMV9SME core and computes sgemm wrongly (see README).
status=0
check() {
  local name="$1"; shift
  local build="$root/build/aarch64-$name"
  cmake -S "$root/tests/cpp" -B "$build" -G "$generator" -DCMAKE_SYSTEM_NAME=Linux \
    -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DOPENBLAS_INCLUDE_DIR="$openblas/scipy_openblas32/include" \
    -DOPENBLAS_LIB_DIR="$openblas/scipy_openblas32/lib" "$@" >/dev/null
  cmake --build "$build" --target kernel_parity -j "$(nproc)" >/dev/null
  echo "check_aarch64: $name"
  qemu-aarch64 -cpu neoverse-n1 -L "$sysroot" "$build/kernel_parity" || status=1
}
generator="Unix Makefiles"
command -v ninja >/dev/null && generator=Ninja
check gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++
check clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_COMPILER_TARGET=aarch64-linux-gnu
echo "check_aarch64: $((SECONDS - start)) s, exit status $status"
exit $status
