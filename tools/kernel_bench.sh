#!/usr/bin/env bash
# Builds tools/kernel_bench.cc against the kernels in ffi/ and times them, one thread, on a
# 3x3 layer with jaxcps.bench's clustered ReLU-like activation (needs jaxcps installed).
#
#   tools/kernel_bench.sh [H C O ZEROS KERNELS REPEATS]
#   tools/kernel_bench.sh 28 512 512 0.5 cpo,cps,mec     # VGG-16 conv4_2 at 50% zeros
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
h="${1:-28}" c="${2:-512}" o="${3:-512}" zeros="${4:-0.5}" kernels="${5:-cpo,cps,im2col,mec}"
repeats="${6:-9}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work" "$h" "$c" "$o" "$zeros" <<'PY'
import sys

import numpy as np

from jaxcps.bench.activations import relu_activation

work, h, c, o, zeros = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
relu_activation((1, h, h, c), zeros, seed=1).tofile(f"{work}/x.bin")
rng = np.random.default_rng(0)
(rng.standard_normal((3, 3, c, o)) / np.sqrt(9 * c)).astype(np.float32).tofile(f"{work}/w.bin")
PY

openblas="$(python3 -c 'import scipy_openblas32 as s; print(s.get_include_dir(), s.get_lib_dir())')"
read -r blas_include blas_lib <<< "$openblas"
cmake -S "$root/tools/kernel_bench" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DJAXCPS_ROOT="$root" -DOPENBLAS_INCLUDE_DIR="$blas_include" -DOPENBLAS_LIB_DIR="$blas_lib" \
  > "$work/cmake.log"
cmake --build "$work/build" -j 2 > "$work/build.log"
"$work/build/kernel_bench" "$work/x.bin" "$work/w.bin" "$h" "$c" "$o" "$kernels" "$repeats"
