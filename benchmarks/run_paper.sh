#!/usr/bin/env bash
# Records the full `paper` suite into benchmarks/results/ (protocol: benchmarks/README.md):
#   results/paper/          clustered zeros (realistic), with XLA's Eigen path as "xla_eigen"
#   results/paper-uniform/  iid zeros, the worst case for CPS
# Each directory gets results.md (table + plots), bench.json, bench.csv, the PNGs, table.txt.
# Extra arguments go to both runs, e.g. `benchmarks/run_paper.sh --repeats 9`.
# `python -m jaxcps.bench` is `jaxcps bench` without the other subcommands' imports.
set -euo pipefail
cd "$(dirname "$0")/.."
results=benchmarks/results
mkdir -p "$results/paper" "$results/paper-uniform"
python -m jaxcps.bench --suite paper --eigen --out "$results/paper" "$@" \
  | tee "$results/paper/table.txt"
python -m jaxcps.bench --suite paper --uniform --out "$results/paper-uniform" "$@" \
  | tee "$results/paper-uniform/table.txt"
