"""What `jaxcps bench` derives from its timings and how it reports them.

Per case and contender: median time, ratio to XLA (t_xla / t, > 1 = faster than XLA), the
paper's time saving against im2col (100 · (t_im2col − t) / t_im2col), compression ratio
against im2col and MEC (from `jaxcps.footprint`), useful and dense-equivalent GFLOP/s, the
share of the achievable peak, the share of building the compressed form, and the error
against XLA's result.

FLOP counts (per multiply-add, 2 FLOP):
- dense-equivalent = 2 · N·OH·OW·KH·KW·C·O, what a dense convolution computes;
- useful = 2 · O · Σ over non-zero inputs of the number of (output pixel, tap) pairs that
  the input feeds. At stride 1 away from the borders that is 2 · nnz · KH·KW · O; counting
  the pairs exactly keeps stride 2 and border pixels honest.
- %peak divides the FLOP rate an algorithm really executes (useful for the kernels that skip
  zeros, CPO and CPS; dense-equivalent for XLA, im2col and MEC) by the achievable peak.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from jax import lax

import jaxcps
from jaxcps.algorithms import FFI_ALGORITHMS, KERNELS
from jaxcps.bench.layers import Case
from jaxcps.footprint import FOOTPRINT_ALGORITHMS
from jaxcps.timing import medians as median_times

#: Contenders that compute on non-zeros only (and build a compressed form in every call).
SPARSE: tuple[str, ...] = tuple(a for a in FFI_ALGORITHMS if KERNELS[a].skips_zeros)
#: A result passes if max|y − y_xla| ≤ REL_TOL · max|y_xla|.
REL_TOL = 1e-4

CSV_COLUMNS: tuple[str, ...] = (
    "case", "layer", "h", "w", "c", "o", "kh", "kw", "stride", "padding", "zeros",
    "zeros_measured", "nnz", "mean_run", "algorithm", "median_ms", "ratio_to_xla",
    "saving_vs_im2col_pct", "footprint_bytes", "cr_vs_im2col", "cr_vs_mec", "useful_gflops",
    "dense_gflops", "pct_peak", "build_pct", "max_rel_err", "ok", "zeros_placement", "date", "git_commit",
    "isa", "jax", "jaxlib", "threads", "xla_conv_path", "xla_eigen_conv_path",
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
    whether zeros were placed uniformly (else clustered); `build_seconds` the mean time each
    kernel in `SPARSE` spent building its compressed form per call.
    """
    layer = case.layer
    flops = {"useful": useful_flops(case, x), "dense": dense_flops(case, outputs["xla"].shape)}
    footprints = {a: jaxcps.footprint(x, layer.kernel_shape, layer.strides, layer.padding, a)
                  for a in FOOTPRINT_ALGORITHMS}
    medians = median_times(times)
    algorithms = {
        name: _algorithm_metrics(name, ts, medians, footprints, flops,
                                 max_rel_error(outputs[name], outputs["xla"]))
        for name, ts in times.items()
    }
    for name, seconds in (build_seconds or {}).items():
        algorithms[name]["build_pct"] = 100.0 * seconds / medians[name]
    return {
        "id": case.id,
        "layer": layer.id,
        "shape": layer.describe(),
        "h": layer.h, "w": layer.w, "c": layer.c, "o": layer.o,
        "kh": layer.kh, "kw": layer.kw, "stride": layer.stride,
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
        "algorithms": algorithms,
    }


def _algorithm_metrics(
    name: str,
    times: list[float],
    medians: dict[str, float],
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
        "saving_vs_im2col_pct": 100.0 * (medians["im2col"] - t) / medians["im2col"]
        if "im2col" in medians else None,
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
        return list(lax.padtype_to_pads((layer.h, layer.w), (layer.kh, layer.kw),
                                        layer.strides, layer.padding))
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
    """The whole report; adds %peak (of the achievable peak) to every algorithm."""
    for record in records:
        for metrics in record["algorithms"].values():
            metrics["pct_peak"] = 100.0 * metrics["executed_gflops"] / peak["achievable_gflops"]
    fastest = max(m["executed_gflops"] for r in records for m in r["algorithms"].values())
    peak["exceeded_by_a_contender"] = fastest > peak["achievable_gflops"]
    return {"machine": machine, "peak": peak, "settings": settings, "cases": records}


def write_all(report: dict[str, Any], out: Path, *, plots: bool = True) -> list[Path]:
    """Writes bench.json, bench.csv, results.md and (if `plots`) the PNGs into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json(report, out / "bench.json"), write_csv(report, out / "bench.csv")]
    images = []
    if plots:
        from jaxcps.bench import plots  # matplotlib only when plotting

        images = plots.plot_all(report, out)
    paths.append(write_markdown(report, out / "results.md", images))
    return paths + images


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


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _header(report: dict[str, Any]) -> list[str]:
    m, p, s = report["machine"], report["peak"], report["settings"]
    return [
        f"jaxcps bench: suite={s['suite']} zeros={s['zeros_placement']} "
        f"dead_channels={s['dead_channels']} repeats={s['repeats']} (median), seed={s['seed']}",
        f"machine: {m['cpu']}, {m['threads']} threads, ISA {m['isa']}, jax {m['jax']} / "
        f"jaxlib {m['jaxlib']}, XLA conv paths {_paths(report)}, "
        f"commit {m['git_commit'][:12]}, {m['date']}",
        f"achievable peak {p['achievable_gflops']:.0f} GFLOP/s: {p['achievable_method']}",
        f"nominal peak {_fmt(p['nominal_gflops'], '.0f')} GFLOP/s: {p['nominal_method']}",
        *(["WARNING: a contender ran faster than the sgemm peak: the machine was busier while "
            "the sgemm ran, so %peak overstates the share of the real peak"]
          if p.get("exceeded_by_a_contender") else []),
        "xla/alg > 1 = faster than XLA; save% = 100*(t_im2col - t)/t_im2col; CR = footprint "
        "ratio; useful GF/s counts non-zero inputs only; %peak = executed GF/s / achievable.",
    ]


def _paths(report: dict[str, Any]) -> str:
    """E.g. "xla: ynn 5, eigen 2; xla_eigen: eigen 7" (cases per compiled path)."""
    parts = []
    for key, name in (("xla_conv_path", "xla"), ("xla_eigen_conv_path", "xla_eigen")):
        found = [r[key] for r in report["cases"] if r.get(key)]
        if found:
            counts = ", ".join(f"{p} {found.count(p)}" for p in dict.fromkeys(found))
            parts.append(f"{name}: {counts}")
    return "; ".join(parts)


_COLUMNS = ("alg", "ms", "xla/alg", "save%", "CR/im2col", "CR/MEC", "useful GF/s",
            "dense GF/s", "%peak", "build%", "rel.err")


def _algorithm_row(name: str, m: dict[str, Any]) -> list[str]:
    status = "ref" if m["ok"] is None else ("ok" if m["ok"] else "FAIL")
    return [name, _fmt(m["median_ms"], ".3f"), _fmt(m["ratio_to_xla"], ".2f"),
            _fmt(m["saving_vs_im2col_pct"], ".0f"), _fmt(m["cr_vs_im2col"], ".1f"),
            _fmt(m["cr_vs_mec"], ".1f"), _fmt(m["useful_gflops"], ".1f"),
            _fmt(m["dense_gflops"], ".1f"), _fmt(m["pct_peak"], ".0f"),
            _fmt(m["build_pct"], ".0f"), f"{m['max_rel_err']:.1e} {status}"]


def _case_title(record: dict[str, Any]) -> str:
    paths = f"XLA path {record['xla_conv_path']}" + (
        f", xla_eigen path {record['xla_eigen_conv_path']}"
        if record.get("xla_eigen_conv_path") else "")
    return (f"{record['id']}  {record['shape']}  zeros {record['zeros_measured']:.3f} "
            f"({record['zeros_placement']}, mean run {record['mean_run']:.2f}; {paths})")


def format_table(report: dict[str, Any]) -> str:
    """The terminal table: a header, then per case one row per contender, then a summary."""
    widths = [max(len(c), 9) for c in _COLUMNS]
    widths[0] = max(len(a) for r in report["cases"] for a in r["algorithms"]) + 1

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    lines = _header(report) + [""]
    for record in report["cases"]:
        lines += [_case_title(record), line(_COLUMNS)]
        lines += [line(_algorithm_row(a, m)) for a, m in record["algorithms"].items()]
        lines.append("")
    return "\n".join(lines + [format_summary(report)])


def format_summary(report: dict[str, Any]) -> str:
    """One row per case: time ratio to XLA of every contender and the CR vs im2col of every
    contender that skips zeros."""
    names = [n for n in report["cases"][0]["algorithms"] if n != "xla"]
    compressed = [n for n in names if n in SPARSE]
    cr_heads = [f"CR {n}/im2col" for n in compressed]
    width = max(len(r["id"]) for r in report["cases"])
    head = "case".ljust(width) + "  xla ms  " + "  ".join(n.rjust(9) for n in names)
    lines = ["time ratio to XLA (t_xla / t, > 1 = faster)", "  ".join([head, *cr_heads])]
    for r in report["cases"]:
        algs = r["algorithms"]
        ratios = "  ".join(f"{algs[n]['ratio_to_xla']:9.2f}" for n in names)
        row = f"{r['id'].ljust(width)}  {algs['xla']['median_ms']:6.2f}  {ratios}"
        crs = [_fmt(algs[n]["cr_vs_im2col"], f"{len(h)}.1f") for n, h in zip(compressed, cr_heads)]
        lines.append("  ".join([row, *crs]))
    return "\n".join(lines)


def write_markdown(report: dict[str, Any], path: Path, images: list[Path]) -> Path:
    """results.md: the header, the summary, the full table (as markdown) and the plots."""
    parts = ["# jaxcps bench results", ""]
    parts += [f"- {line}" for line in _header(report)]
    parts += ["", "## Summary", "", "```", format_summary(report), "```", "", "## Per case", ""]
    parts += ["| case | " + " | ".join(_COLUMNS) + " |", "|---" * (len(_COLUMNS) + 1) + "|"]
    for record in report["cases"]:
        for name, m in record["algorithms"].items():
            parts.append(f"| {record['id']} | " + " | ".join(_algorithm_row(name, m)) + " |")
    parts += ["", *(f"![{p.stem}]({p.name})" for p in images), ""]
    path.write_text("\n".join(parts))
    return path
