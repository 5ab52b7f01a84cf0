"""How steady the machine stayed through a `jaxcps bench` run, judged from the run itself.

The dense engines do not look at zeros, so a layer's best dense time (at one batch size)
should be the same at every zero fraction of a run. Where it is not, something else took the
cores while that case ran, and the case's ratio to the best dense engine is flattered (the
dense time slowed) or understated (the kernels slowed). `dense_control` measures this per
case; `speedup_medians` gives each speed-up target's median both as measured and against the
layer's fastest dense time in the run, the strict reading that a slowed dense time cannot
flatter; `format_stability` prints both, with the drift of the sgemm peak measured before and
after the cases, for `benchmarks/check_peer_targets.py`; `disturbed` says in words what marks a
run, for the end of `jaxcps bench`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from jaxcps.bench.targets import SPEEDUP_OVER_DENSE, near

#: A case whose best dense time lies more than this (%) above its layer's fastest in the run
#: counts as disturbed; so does a run whose sgemm rate moved more than this between the
#: measurements before and after its cases.
DISTURBED_PCT = 10.0

Case = dict[str, Any]


@dataclass(frozen=True)
class DenseControl:
    """One case's best dense time against its layer's fastest in the run (same batch).

    Attributes:
      case: the case id.
      dense_ms: the case's best dense time (median).
      fastest_ms: the least best dense time of the same layer and batch over the run's cases.
    """

    case: str
    dense_ms: float
    fastest_ms: float

    @property
    def excess_pct(self) -> float:
        """How much slower (%) the case's dense time was than its layer's fastest."""
        return 100.0 * (self.dense_ms / self.fastest_ms - 1.0)

    @property
    def disturbed(self) -> bool:
        """Whether the case's dense time lies more than `DISTURBED_PCT` above the fastest."""
        return self.excess_pct > DISTURBED_PCT


@dataclass(frozen=True)
class SpeedupMedian:
    """A speed-up target's cases, as measured and against each layer's fastest dense time.

    Attributes:
      zeros: the zero fraction.
      goal: the least speed-up the target asks for.
      cases: the cases at `zeros` with a sparse kernel (all batch sizes).
      median: the median speed-up over the best dense engine, as measured.
      reaching: how many cases reach `goal`, as measured.
      strict_median: the median speed-up over the layer's fastest dense time in the run.
      strict_reaching: how many cases reach `goal` that way.
    """

    zeros: float
    goal: float
    cases: int
    median: float
    reaching: int
    strict_median: float
    strict_reaching: int


def _layer_key(case: Case) -> tuple[str, int]:
    return case["layer"], case["batch"]


def _dense_times(report: dict[str, Any]) -> dict[tuple[str, int], list[float]]:
    """(layer, batch) -> the best dense time of each of the run's cases of it."""
    times: dict[tuple[str, int], list[float]] = {}
    for case in report["cases"]:
        times.setdefault(_layer_key(case), []).append(case["best_dense_ms"])
    return times


def dense_control(report: dict[str, Any]) -> list[DenseControl]:
    """Every case of a layer and batch run at more than one zero fraction, in report order."""
    times = _dense_times(report)
    return [
        DenseControl(case["id"], case["best_dense_ms"], min(times[_layer_key(case)]))
        for case in report["cases"]
        if len(times[_layer_key(case)]) > 1
    ]


def speedup_medians(report: dict[str, Any]) -> list[SpeedupMedian]:
    """One entry per speed-up target whose zero fraction the report has cases at."""
    fastest = {key: min(times) for key, times in _dense_times(report).items()}
    medians = []
    for zeros, goal in SPEEDUP_OVER_DENSE.items():
        cases = [
            c for c in report["cases"] if near(c["zeros"], zeros) and c["best_sparse"] is not None
        ]
        if not cases:
            continue
        measured = [c["sparse_vs_dense"] for c in cases]
        strict = [
            fastest[_layer_key(c)] / c["algorithms"][c["best_sparse"]]["median_ms"] for c in cases
        ]
        medians.append(
            SpeedupMedian(
                zeros=zeros,
                goal=goal,
                cases=len(cases),
                median=statistics.median(measured),
                reaching=sum(r >= goal for r in measured),
                strict_median=statistics.median(strict),
                strict_reaching=sum(r >= goal for r in strict),
            )
        )
    return medians


def sgemm_drift_pct(report: dict[str, Any]) -> float | None:
    """How much (%) the best sgemm rate after the cases differs from the one before them."""
    peak = report.get("peak") or {}
    before, after = peak.get("sgemm_gflops_before"), peak.get("sgemm_gflops_after")
    if not before or not after:
        return None
    return 100.0 * (max(after.values()) / max(before.values()) - 1.0)


def _peak_drifted(drift: float | None) -> bool:
    """Whether an sgemm drift (`sgemm_drift_pct`, None: not measured) disturbs the run."""
    return drift is not None and abs(drift) > DISTURBED_PCT


def disturbed_cases(report: dict[str, Any]) -> int:
    """How many of the report's cases count as disturbed: those over `DISTURBED_PCT` against
    their layer's fastest dense time, or every case if the sgemm rate drifted more than that."""
    if _peak_drifted(sgemm_drift_pct(report)):
        return len(report["cases"])
    return sum(c.disturbed for c in dense_control(report))


def disturbed(report: dict[str, Any]) -> list[str]:
    """What marks the run as disturbed (empty if nothing does), one sentence each."""
    reasons = []
    over = [c for c in dense_control(report) if c.disturbed]
    if over:
        worst = max(over, key=lambda c: c.excess_pct)
        reasons.append(
            f"the best dense time of {len(over)} case{'' if len(over) == 1 else 's'} lay more "
            f"than {DISTURBED_PCT:.0f}% above "
            f"its layer's fastest in the run (worst {worst.case}: {worst.dense_ms:.3f} ms against "
            f"{worst.fastest_ms:.3f}, +{worst.excess_pct:.0f}%)"
        )
    drift = sgemm_drift_pct(report)
    if _peak_drifted(drift):
        reasons.append(f"the sgemm rate moved {drift:+.1f}% between before and after the cases")
    return reasons


def format_stability(report: dict[str, Any]) -> str:
    """Markdown: the speed-up medians both ways, and how steady the machine was."""
    lines = [
        "Speed-up over the best dense engine, all batch sizes: as measured, and against the",
        "layer's fastest dense time in the run (the dense engines ignore zeros, so that time is",
        "the nearest to what they take undisturbed, and a case slowed only for them cannot",
        "flatter this reading).",
        "",
        "| zeros | target | cases | median | reaching | median, strict | reaching, strict |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in speedup_medians(report):
        lines.append(
            f"| {m.zeros:.0%} | {m.goal}x | {m.cases} | {m.median:.2f}x | {m.reaching} | "
            f"{m.strict_median:.2f}x | {m.strict_reaching} |"
        )
    control = dense_control(report)
    lines += ["", "| how steady the machine was | measured | steady |", "|---|---|---|"]
    if control:
        worst = max(control, key=lambda c: c.excess_pct)
        over = sum(c.disturbed for c in control)
        lines.append(
            f"| best dense time above its layer's fastest in the run (same batch, other zero "
            f"fractions) | median {statistics.median(c.excess_pct for c in control):.1f}%, "
            f"worst {worst.excess_pct:.1f}% ({worst.case}) | "
            f"{'yes' if not over else f'NO: {over} of {len(control)} cases over'} "
            f"(limit {DISTURBED_PCT:.0f}%) |"
        )
    drift = sgemm_drift_pct(report)
    if drift is not None:
        steady = "NO" if _peak_drifted(drift) else "yes"
        lines.append(
            f"| sgemm rate after the cases against before | {drift:+.1f}% | {steady} "
            f"(limit {DISTURBED_PCT:.0f}%) |"
        )
    return "\n".join(lines)
