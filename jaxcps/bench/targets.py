"""The performance targets of jaxcps against the best dense CPU engine, and their evaluation.

"Sparse kernel" means the fastest jaxcps kernel that skips zeros in a case; "best dense
engine" the fastest of XLA and the `--peers` engines (`jaxcps.bench.report`). `evaluate`
checks a `jaxcps bench --peers` report on the peers suites against every target;
`benchmarks/check_peer_targets.py` prints the result, and the peers plots
(`jaxcps.bench.plots`) mark the targets.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Zero fraction -> least speed-up of the sparse kernel over the best dense engine (at every
#: batch size, on every layer).
SPEEDUP_OVER_DENSE: dict[float, float] = {0.5: 1.2, 0.7: 1.8, 0.9: 4.0}
#: Zero fraction -> least share (%) of the achievable peak that the sparse kernel's useful
#: GFLOP/s reach (at every batch size, on every layer).
PEAK_SHARE_PCT: dict[float, float] = {0.5: 60.0, 0.9: 45.0}
#: At 0% zeros: least ratio to XLA of the best jaxcps kernel (any, im2col and MEC included),
#: on every layer.
DENSE_RATIO_TO_XLA = 1.0
#: Most time (%) the sparse kernel spends building its compressed form, over the cases with
#: zeros: at the median and in the worst case.
BUILD_PCT_MEDIAN = 5.0
BUILD_PCT_WORST = 10.0

Case = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """One target evaluated on a report.

    Attributes:
      target: what is required, e.g. "speed-up over the best dense engine >= 1.2x at 50%
        zeros, batch 1".
      cases: how many cases it covers (0: none of the report's cases; not measured).
      measured: the figure compared with the target: the worst case's, or the median.
      where: the case of `measured` ("median" for a median).
      met: whether the target holds (None when not measured).
      miss: by how much it is missed and in how many cases ("" when met).
    """

    target: str
    cases: int
    measured: float | None
    where: str
    met: bool | None
    miss: str


def near(a: float, b: float) -> bool:
    """Whether two zero fractions are the same (they come from JSON as floats)."""
    return abs(a - b) < 1e-9


def _bound(
    target: str,
    cases: list[Case],
    value: Callable[[Case], float],
    goal: float,
    *,
    at_least: bool,
    unit: str,
) -> Verdict:
    """The worst case of `value` over `cases` against `goal` (a floor or a ceiling)."""
    if not cases:
        return Verdict(target, 0, None, "-", None, "")
    values = [(value(c), c["id"]) for c in cases]
    worst, where = min(values) if at_least else max(values)
    missing = [v for v, _ in values if (v < goal if at_least else v > goal)]
    miss = ""
    if missing:
        side = "short by" if at_least else "over by"
        miss = (
            f"{side} {abs(goal - worst):.2f}{unit} at worst; {len(missing)} of "
            f"{len(values)} cases miss"
        )
    return Verdict(target, len(values), worst, where, not missing, miss)


def _sparse_pct_peak(case: Case) -> float:
    return case["algorithms"][case["best_sparse"]]["pct_peak"]


def _sparse_build_pct(case: Case) -> float:
    return case["algorithms"][case["best_sparse"]]["build_pct"]


def _best_jaxcps_ratio(case: Case) -> float:
    return case["algorithms"][case["best_jaxcps"]]["ratio_to_xla"]


def evaluate(report: dict[str, Any]) -> list[Verdict]:
    """Every target on the cases of a `jaxcps bench` report, per batch size where it applies.

    Args:
      report: the parsed bench.json of a `--peers` run (without `--peers`, XLA is the only
        dense engine).

    Returns:
      One verdict per target and batch size, in the order of the constants above.
    """
    cases = [c for c in report["cases"] if c["best_sparse"] is not None]
    batches = sorted({c["batch"] for c in report["cases"]})
    verdicts = []
    for zeros, goal in SPEEDUP_OVER_DENSE.items():
        for batch in batches:
            subset = [c for c in cases if near(c["zeros"], zeros) and c["batch"] == batch]
            verdicts.append(
                _bound(
                    f"speed-up over the best dense engine >= {goal}x at {zeros:.0%} zeros, "
                    f"batch {batch}",
                    subset,
                    lambda c: c["sparse_vs_dense"],
                    goal,
                    at_least=True,
                    unit="x",
                )
            )
    for zeros, goal in PEAK_SHARE_PCT.items():
        for batch in batches:
            subset = [c for c in cases if near(c["zeros"], zeros) and c["batch"] == batch]
            verdicts.append(
                _bound(
                    f"useful GFLOP/s >= {goal:.0f}% of the achievable peak at {zeros:.0%} zeros, "
                    f"batch {batch}",
                    subset,
                    _sparse_pct_peak,
                    goal,
                    at_least=True,
                    unit=" points",
                )
            )
    dense = [c for c in report["cases"] if near(c["zeros"], 0.0) and c["best_jaxcps"]]
    verdicts.append(
        _bound(
            f"best jaxcps kernel (any) >= {DENSE_RATIO_TO_XLA}x XLA at 0% zeros, every layer",
            dense,
            _best_jaxcps_ratio,
            DENSE_RATIO_TO_XLA,
            at_least=True,
            unit="x",
        )
    )
    built = [c for c in cases if c["zeros"] > 0 and _sparse_build_pct(c) is not None]
    verdicts.append(_median_build(built))
    verdicts.append(
        _bound(
            f"building the compressed form <= {BUILD_PCT_WORST:.0f}% of the kernel's time, worst "
            f"case",
            built,
            _sparse_build_pct,
            BUILD_PCT_WORST,
            at_least=False,
            unit=" points",
        )
    )
    return verdicts


def _median_build(cases: list[Case]) -> Verdict:
    target = (
        f"building the compressed form <= {BUILD_PCT_MEDIAN:.0f}% of the kernel's time, "
        f"median over the cases with zeros"
    )
    if not cases:
        return Verdict(target, 0, None, "-", None, "")
    median = statistics.median(_sparse_build_pct(c) for c in cases)
    met = median <= BUILD_PCT_MEDIAN
    miss = "" if met else f"over by {median - BUILD_PCT_MEDIAN:.2f} points"
    return Verdict(target, len(cases), median, "median", met, miss)


def format_verdicts(verdicts: list[Verdict]) -> str:
    """A markdown table: target, cases, measured, where, met, miss."""
    lines = ["| target | cases | measured | where | met | miss |", "|---|---|---|---|---|---|"]
    for v in verdicts:
        measured = "-" if v.measured is None else f"{v.measured:.2f}"
        met = {True: "yes", False: "NO", None: "not measured"}[v.met]
        lines.append(
            f"| {v.target} | {v.cases} | {measured} | {v.where} | {met} | {v.miss or '-'} |"
        )
    return "\n".join(lines)
