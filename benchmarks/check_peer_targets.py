"""Checks a recorded `--peers` run against the targets set against the best dense CPU engine.

    python benchmarks/check_peer_targets.py benchmarks/results/peers/bench.json \
        [--holdout benchmarks/results/peers-holdout/bench.json] [--disturbed-cases]

Prints, per run, a markdown table: each target (per batch size where it applies), the cases it
covers, the measured figure (the worst case, or the median), where, whether it is met, and the
size of the miss; then the speed-up medians, as measured and against each layer's fastest dense
time in the run, and how steady the machine was (`jaxcps.bench.stability`). The targets and
their evaluation are `jaxcps.bench.targets`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jaxcps.bench import stability, targets


def _check(title: str, path: Path) -> None:
    report = json.loads(path.read_text())
    print(f"## {title}: {path}\n")
    if not report["settings"].get("peers"):
        print("Note: this run had no --peers; XLA is its only dense engine.\n")
    print(targets.format_verdicts(targets.evaluate(report)) + "\n")
    print(stability.format_stability(report) + "\n")


def main() -> None:
    """Parses the arguments and prints the verdicts of each run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path, help="bench.json of a `--suite peers` run")
    parser.add_argument(
        "--holdout",
        type=Path,
        help="bench.json of a `--suite peers-holdout` run, checked the same way",
    )
    parser.add_argument(
        "--disturbed-cases",
        action="store_true",
        help="print only how many cases of the runs were disturbed (jaxcps.bench.stability)",
    )
    args = parser.parse_args()
    if args.disturbed_cases:
        paths = [args.bench_json] + ([args.holdout] if args.holdout else [])
        print(sum(stability.disturbed_cases(json.loads(p.read_text())) for p in paths))
        return
    _check("peers", args.bench_json)
    if args.holdout:
        _check("holdout (layers not tuned for)", args.holdout)


if __name__ == "__main__":
    main()
