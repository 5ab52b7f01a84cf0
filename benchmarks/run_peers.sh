#!/usr/bin/env bash
# Records jaxcps against the dense CPU engines (protocol: benchmarks/README.md):
#   results/peers/          the peers suite: the layers the targets name, batch 1 and 8,
#                           0/50/70/90% zeros, with ONNX Runtime, OpenVINO and oneDNN (PyTorch)
#   results/peers-holdout/  the same for layers of other shapes, not tuned for
# Each directory gets results.md (tables and plots), bench.json, bench.csv, the PNGs and
# table.txt (the terminal output); results/peers/targets.md is check_peer_targets.py's verdict
# on both runs. Needs `pip install ".[bench,peers]"`; PyTorch is used when importable. Run it on
# a quiet machine: every engine uses all the CPUs this process may run on.
# Extra arguments go to both runs and win over the defaults here, e.g. `--repeats 15`.
# PEERS_OUT names the pair of directories (default peers: results/peers and
# results/peers-holdout), e.g. PEERS_OUT=peers-avx2 for another machine.
set -euo pipefail
cd "$(dirname "$0")/.."
results=benchmarks/results
out="${PEERS_OUT:-peers}"
for suite in peers peers-holdout; do
  dir="$results/$out${suite#peers}"
  mkdir -p "$dir"
  python -m jaxcps.bench --suite "$suite" --peers --repeats 11 --warmup 3 \
    --out "$dir" "$@" | tee "$dir/table.txt"
done
python benchmarks/check_peer_targets.py "$results/$out/bench.json" \
  --holdout "$results/$out-holdout/bench.json" | tee "$results/$out/targets.md"
