"""What `jaxcps bench` derives from its timings, and its JSON and CSV outputs.

Per case and contender: median time, ratio to XLA (t_xla / t, > 1 = faster than XLA) and to
the best dense engine, the paper's time saving against im2col (100 · (t_im2col − t) /
t_im2col), compression ratio against im2col and MEC (from `jaxcps.footprint`), useful and
dense-equivalent GFLOP/s, the share of the achievable peak, the share of building the
compressed form, and the error against XLA's result.

Per case: the best dense engine (the fastest of XLA and the `--peers` engines), the best
jaxcps kernel that skips zeros, the best jaxcps kernel of all, and the speed-up of the second
over the first.

FLOP counts (per multiply-add, 2 FLOP):
- dense-equivalent = 2 · N·OH·OW·KH·KW·C·O, what a dense convolution computes;
- useful = 2 · O · Σ over non-zero inputs of the number of (output pixel, tap) pairs that
  the input feeds. At stride 1 away from the borders that is 2 · nnz · KH·KW · O; counting
  the pairs exactly keeps stride 2 and border pixels honest.
- %peak divides the FLOP rate an algorithm really executes (useful for the kernels that skip
  zeros; dense-equivalent for the others) by the achievable peak: the larger of the sgemm
  rate (`jaxcps.bench.machine`) and the fastest dense engine's rate in the run.

The text forms (terminal table, markdown) are in `jaxcps.bench.tables`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from jax import lax

import jaxcps
from jaxcps.algorithms import COMPRESSING_ALGORITHMS, FFI_ALGORITHMS, SPARSE_ALGORITHMS
from jaxcps.bench import peers
from jaxcps.bench.layers import Case
from jaxcps.footprint import FOOTPRINT_ALGORITHMS
from jaxcps.timing import medians as median_times

#: Contenders that skip zero activations (and build their compressed form or masks in every
#: call).
SPARSE: tuple[str, ...] = SPARSE_ALGORITHMS
#: Those of them that build a compressed form (footprint and compression-ratio columns).
COMPRESSING: tuple[str, ...] = COMPRESSING_ALGORITHMS
#: The dense engines a user could run instead of jaxcps, when timed in the same rounds (XLA
#: always, the others with `--peers`); the fastest is a case's `best_dense`. "xla_eigen" is not
#: one: it runs in another process, at another time.
DENSE_ENGINES: tuple[str, ...] = ("xla", *peers.ENGINES)
#: A result passes if max|y − y_xla| ≤ REL_TOL · max|y_xla|.
REL_TOL = 1e-4

CSV_COLUMNS: tuple[str, ...] = (
    "case",
    "layer",
    "batch",
    "h",
    "w",
    "c",
    "o",
    "kh",
    "kw",
    "stride",
    "padding",
    "zeros",
    "zeros_measured",
    "nnz",
    "mean_run",
    "algorithm",
    "median_ms",
    "ratio_to_xla",
    "ratio_to_best_dense",
    "saving_vs_im2col_pct",
    "footprint_bytes",
    "cr_vs_im2col",
    "cr_vs_mec",
    "useful_gflops",
    "dense_gflops",
    "pct_peak",
    "build_pct",
    "max_rel_err",
    "ok",
    "best_dense",
    "best_dense_ms",
    "best_sparse",
    "sparse_vs_dense",
    "best_jaxcps",
    "zeros_placement",
    "date",
    "git_commit",
    "isa",
    "jax",
    "jaxlib",
    "threads",
    "xla_conv_path",
    "xla_eigen_conv_path",
)


def case_record(
    case: Case,
    x: np.ndarray,
    times: dict[str, list[float]],
    outputs: dict[str, np.ndarray],
    xla_paths: dict[str, str],
    *,
    uniform: bool,
    build_seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Everything measured and derived for one case (without %peak, see `finish_report`).

    `xla_paths` says which XLA CPU path ("ynn", "eigen") ran each XLA contender; `uniform`
    whether zeros were placed uniformly (else clustered); `build_seconds` the median time each
    kernel in `SPARSE` spent building its compressed form in its timed calls.
    """
    layer = case.layer
    flops = {"useful": useful_flops(case, x), "dense": dense_flops(case, outputs["xla"].shape)}
    footprints = {
        a: jaxcps.footprint(x, layer.kernel_shape, layer.strides, layer.padding, a)
        for a in FOOTPRINT_ALGORITHMS
    }
    medians = median_times(times)
    best = _fastest(medians)
    algorithms = {
        name: _algorithm_metrics(
            name,
            ts,
            medians,
            best["dense"],
            footprints,
            flops,
            max_rel_error(outputs[name], outputs["xla"]),
        )
        for name, ts in times.items()
    }
    for name, seconds in (build_seconds or {}).items():
        algorithms[name]["build_pct"] = 100.0 * seconds / medians[name]
    return {
        "id": case.id,
        "layer": layer.id,
        "batch": case.batch,
        "shape": layer.describe(),
        "h": layer.h,
        "w": layer.w,
        "c": layer.c,
        "o": layer.o,
        "kh": layer.kh,
        "kw": layer.kw,
        "stride": layer.stride,
        "padding": layer.padding if isinstance(layer.padding, str) else list(layer.padding),
        "zeros": case.zeros,
        "zeros_measured": float(np.mean(x == 0)),
        "nnz": int(np.count_nonzero(x)),
        "mean_run": mean_run_length(x),
        "useful_flops": flops["useful"],
        "dense_flops": flops["dense"],
        "zeros_placement": "uniform" if uniform else "clustered",
        "xla_conv_path": xla_paths["xla"],
        "xla_eigen_conv_path": xla_paths.get("xla_eigen"),
        "best_dense": best["dense"],
        "best_dense_ms": 1e3 * medians[best["dense"]],
        "best_sparse": best["sparse"],
        "sparse_vs_dense": medians[best["dense"]] / medians[best["sparse"]]
        if best["sparse"]
        else None,
        "best_jaxcps": best["jaxcps"],
        "algorithms": algorithms,
    }


def _fastest(medians: dict[str, float]) -> dict[str, str | None]:
    """The fastest contender timed of each group: "dense" (XLA is always timed), "sparse"
    (kernels that skip zeros) and "jaxcps" (every kernel); None for a group with none."""
    groups = {"dense": DENSE_ENGINES, "sparse": SPARSE, "jaxcps": FFI_ALGORITHMS}
    best = {}
    for group, names in groups.items():
        present = [n for n in names if n in medians]
        best[group] = min(present, key=medians.__getitem__) if present else None
    return best


def _algorithm_metrics(
    name: str,
    times: list[float],
    medians: dict[str, float],
    best_dense: str,
    footprints: dict[str, int],
    flops: dict[str, float],
    error: float,
) -> dict[str, Any]:
    t = medians[name]
    fp = footprints.get(name)
    executed = flops["useful"] if name in SPARSE else flops["dense"]
    return {
        "median_ms": 1e3 * t,
        "times_ms": [1e3 * s for s in times],
        "ratio_to_xla": medians["xla"] / t,
        "ratio_to_best_dense": medians[best_dense] / t,
        "saving_vs_im2col_pct": 100.0 * (medians["im2col"] - t) / medians["im2col"]
        if "im2col" in medians
        else None,
        "footprint_bytes": fp,
        "cr_vs_im2col": footprints["im2col"] / fp if fp else None,
        "cr_vs_mec": footprints["mec"] / fp if fp else None,
        "useful_gflops": flops["useful"] / t / 1e9,
        "dense_gflops": flops["dense"] / t / 1e9,
        "executed_gflops": executed / t / 1e9,
        "build_pct": None,
        "max_rel_err": error,
        "ok": None if name == "xla" else bool(error <= REL_TOL),
    }


def useful_flops(case: Case, x: np.ndarray) -> float:
    """2 · O · Σ over non-zeros of the (output pixel, tap) pairs each feeds (exact)."""
    layer = case.layer
    taps_h = _taps_per_input(layer.h, layer.kh, layer.stride, _pads(case)[0])
    taps_w = _taps_per_input(layer.w, layer.kw, layer.stride, _pads(case)[1])
    pairs = np.einsum("nhwc,h,w->", (x != 0).astype(np.float64), taps_h, taps_w)
    return 2.0 * layer.o * float(pairs)


def dense_flops(case: Case, output_shape: tuple[int, ...]) -> float:
    """2 · N·OH·OW·KH·KW·C·O."""
    n, oh, ow, o = output_shape
    return 2.0 * n * oh * ow * case.layer.kh * case.layer.kw * case.layer.c * o


def _pads(case: Case) -> list[tuple[int, int]]:
    layer = case.layer
    if isinstance(layer.padding, str):
        return list(
            lax.padtype_to_pads(
                (layer.h, layer.w), (layer.kh, layer.kw), layer.strides, layer.padding
            )
        )
    return [tuple(p) for p in layer.padding]


def _taps_per_input(size: int, kernel: int, stride: int, pad: tuple[int, int]) -> np.ndarray:
    """For each input index along one axis, how many (output index, tap) pairs it feeds."""
    out = (size + pad[0] + pad[1] - kernel) // stride + 1
    starts = np.arange(out) * stride - pad[0]
    counts = np.zeros(size)
    for start in starts:
        lo, hi = max(start, 0), min(start + kernel, size)
        counts[lo:hi] += 1
    return counts


def mean_run_length(x: np.ndarray) -> float:
    """Mean length of the runs of adjacent non-zeros along W (what CPS stores as one entry)."""
    rows = np.moveaxis(x != 0, 2, -1).reshape(-1, x.shape[2]).astype(np.int8)
    starts = np.count_nonzero(np.diff(rows, axis=1, prepend=0) == 1)
    return float(rows.sum() / starts) if starts else 0.0


def max_rel_error(y: np.ndarray, reference: np.ndarray) -> float:
    """max|y − reference| / max|reference| (absolute error if the reference is all zero)."""
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    error = float(np.max(np.abs(y.astype(np.float64) - reference))) if y.size else 0.0
    return error / scale if scale > 0 else error


def finish_report(
    records: list[dict[str, Any]],
    *,
    machine: dict[str, Any],
    peak: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The whole report; sets the achievable peak and adds %peak to every contender.

    `peak` comes from `jaxcps.bench.machine.combine_peaks`; the achievable peak is the larger
    of its sgemm rate and the fastest dense engine's rate (dense FLOPs / median time) in
    `records`.
    """
    rate, engine, case_id = max(
        (m["dense_gflops"], name, r["id"])
        for r in records
        for name, m in r["algorithms"].items()
        if name in DENSE_ENGINES
    )
    peak = {
        **peak,
        "dense_engine_gflops": rate,
        "dense_engine_where": f"{engine} on {case_id}",
        "achievable_gflops": max(peak["sgemm_gflops"], rate),
    }
    peak["achievable_method"] = (
        f"the larger of the sgemm rate ({peak['sgemm_gflops']:.0f} GFLOP/s: "
        f"{peak['sgemm_method']}) and the fastest dense engine's rate in this run (dense "
        f"FLOPs / median time: {rate:.0f} GFLOP/s, {peak['dense_engine_where']})"
    )
    for record in records:
        for metrics in record["algorithms"].values():
            metrics["pct_peak"] = 100.0 * metrics["executed_gflops"] / peak["achievable_gflops"]
    fastest = max(m["executed_gflops"] for r in records for m in r["algorithms"].values())
    peak["exceeded_by_a_contender"] = fastest > peak["achievable_gflops"]
    return {"machine": machine, "peak": peak, "settings": settings, "cases": records}


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per case and contender, machine fields repeated in every row."""
    machine = report["machine"]
    rows = []
    for record in report["cases"]:
        for name, m in record["algorithms"].items():
            row = {key: record.get(key) for key in CSV_COLUMNS}
            row.update({key: m.get(key) for key in CSV_COLUMNS if key in m})
            row.update({key: machine.get(key) for key in CSV_COLUMNS if key in machine})
            row.update(case=record["id"], algorithm=name, padding=str(record["padding"]))
            rows.append(row)
    return rows


def write_csv(report: dict[str, Any], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(report))
    return path
