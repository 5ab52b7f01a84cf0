#!/usr/bin/env bash
# Records `jaxcps demo` end to end into benchmarks/results/e2e/ (see its README): every model
# (vgg16, resnet18, resnet50) with every profile (rising, inception, moderate), all-XLA against
# the selected plan and, when onnxruntime is installed, ONNX Runtime with the same weights.
# Each run writes <model>_<profile>/ (plan.json, summary.json, PNGs) and <model>_<profile>.txt.
# Needs `pip install ".[demo,peers]"`; run it on a quiet machine. Extra arguments go to every
# run, e.g. `--image-size 224`. E2E_OUT names the results directory (default e2e), e.g.
# E2E_OUT=e2e-avx2 for a machine of another instruction set.
set -euo pipefail
cd "$(dirname "$0")/.."
out="benchmarks/results/${E2E_OUT:-e2e}"
mkdir -p "$out"
for model in vgg16 resnet18 resnet50; do
  for profile in rising inception moderate; do
    python -m jaxcps demo --model "$model" --profile "$profile" --out "$out/${model}_${profile}" \
      "$@" | tee "$out/${model}_${profile}.txt"
  done
done
