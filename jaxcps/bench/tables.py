"""The text forms of a `jaxcps bench` report: the terminal table and results.md.

The terminal gets a header (settings, machine, peak), per case one row per contender, then two
summaries: every contender's time ratio to XLA with the compression ratios, and the fastest
jaxcps kernel that skips zeros against the best dense engine. results.md holds the same as
markdown, with the plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxcps.bench.report import COMPRESSING

#: Columns of the per-case table, one row per contender.
COLUMNS: tuple[str, ...] = (
    "alg",
    "ms",
    "xla/alg",
    "dense/alg",
    "save%",
    "CR/im2col",
    "CR/MEC",
    "useful GF/s",
    "dense GF/s",
    "%peak",
    "build%",
    "rel.err",
)
#: Columns of the summary against the best dense engine, one row per case.
DENSE_COLUMNS: tuple[str, ...] = (
    "case",
    "best dense",
    "ms",
    "best sparse",
    "ms",
    "speed-up",
    "useful GF/s",
    "%peak",
    "build%",
)


_EXCEEDED = (
    "WARNING: a contender ran faster than the achievable peak: the machine was busier "
    "while the sgemm ran, so %peak overstates the share of the real peak"
)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _header(report: dict[str, Any]) -> list[str]:
    m, p, s = report["machine"], report["peak"], report["settings"]
    return [
        (
            f"jaxcps bench: suite={s['suite']} zeros={s['zeros_placement']} "
            f"dead_channels={s['dead_channels']} repeats={s['repeats']} (median), "
            f"seed={s['seed']}, weights "
            + ("closed over (constant)" if s.get("constant_weights") else "passed per call")
            + f", JAX dispatch {s.get('jax_dispatch', 'asynchronous')}"
        ),
        (
            f"machine: {m['cpu']}, {m['threads']} threads, ISA {m['isa']}, jax {m['jax']} / "
            f"jaxlib {m['jaxlib']}, XLA conv paths {_paths(report)}, "
            f"commit {m['git_commit'][:12]}, {m['date']}"
        ),
        *_engines(s.get("peers")),
        f"achievable peak {p['achievable_gflops']:.0f} GFLOP/s: {p['achievable_method']}",
        f"nominal peak {_fmt(p['nominal_gflops'], '.0f')} GFLOP/s: {p['nominal_method']}",
        *([_EXCEEDED] if p.get("exceeded_by_a_contender") else []),
        (
            "xla/alg, dense/alg > 1 = faster than XLA, than the best dense engine; save% = "
            "100*(t_im2col - t)/t_im2col; CR = footprint ratio; useful GF/s counts non-zero "
            "inputs only; %peak = executed GF/s / achievable."
        ),
    ]


def _engines(peers: dict[str, Any] | None) -> list[str]:
    """The `--peers` line of the header: what each engine runs, and which are missing."""
    if not peers:
        return []
    timed = "; ".join(f"{name}: {text}" for name, text in peers["engines"].items())
    missing = "; ".join(f"{name}: {why}" for name, why in peers["unavailable"].items())
    return [
        f"dense engines ({peers['threads']} threads each): {timed}"
        + (f"; not available: {missing}" if missing else "")
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


def _algorithm_row(name: str, m: dict[str, Any]) -> list[str]:
    status = "ref" if m["ok"] is None else ("ok" if m["ok"] else "FAIL")
    return [
        name,
        _fmt(m["median_ms"], ".3f"),
        _fmt(m["ratio_to_xla"], ".2f"),
        _fmt(m["ratio_to_best_dense"], ".2f"),
        _fmt(m["saving_vs_im2col_pct"], ".0f"),
        _fmt(m["cr_vs_im2col"], ".1f"),
        _fmt(m["cr_vs_mec"], ".1f"),
        _fmt(m["useful_gflops"], ".1f"),
        _fmt(m["dense_gflops"], ".1f"),
        _fmt(m["pct_peak"], ".0f"),
        _fmt(m["build_pct"], ".0f"),
        f"{m['max_rel_err']:.1e} {status}",
    ]


def _case_title(record: dict[str, Any]) -> str:
    paths = f"XLA path {record['xla_conv_path']}" + (
        f", xla_eigen path {record['xla_eigen_conv_path']}"
        if record.get("xla_eigen_conv_path")
        else ""
    )
    return (
        f"{record['id']}  batch {record['batch']}  {record['shape']}  zeros "
        f"{record['zeros_measured']:.3f} ({record['zeros_placement']}, mean run "
        f"{record['mean_run']:.2f}; {paths}; best dense {record['best_dense']})"
    )


def format_table(report: dict[str, Any]) -> str:
    """The terminal table: a header, then per case one row per contender, then the summaries."""
    widths = [max(len(c), 9) for c in COLUMNS]
    widths[0] = max(len(a) for r in report["cases"] for a in r["algorithms"]) + 1

    def line(cells: list[str] | tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))

    lines = [*_header(report), ""]
    for record in report["cases"]:
        lines += [_case_title(record), line(COLUMNS)]
        lines += [line(_algorithm_row(a, m)) for a, m in record["algorithms"].items()]
        lines.append("")
    return "\n".join([*lines, format_summary(report), "", format_dense_summary(report)])


def format_summary(report: dict[str, Any]) -> str:
    """One row per case: time ratio to XLA of every contender and the CR vs im2col of every
    contender that compresses the activation."""
    names = [n for n in report["cases"][0]["algorithms"] if n != "xla"]
    compressed = [n for n in names if n in COMPRESSING]
    cr_heads = [f"CR {n}/im2col" for n in compressed]
    width = max(len(r["id"]) for r in report["cases"])
    head = "case".ljust(width) + "  xla ms  " + "  ".join(n.rjust(9) for n in names)
    lines = ["time ratio to XLA (t_xla / t, > 1 = faster)", "  ".join([head, *cr_heads])]
    for r in report["cases"]:
        algs = r["algorithms"]
        ratios = "  ".join(f"{algs[n]['ratio_to_xla']:9.2f}" for n in names)
        row = f"{r['id'].ljust(width)}  {algs['xla']['median_ms']:6.2f}  {ratios}"
        crs = [
            _fmt(algs[n]["cr_vs_im2col"], f"{len(h)}.1f")
            for n, h in zip(compressed, cr_heads, strict=True)
        ]
        lines.append("  ".join([row, *crs]))
    return "\n".join(lines)


def dense_summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """Per case, the cells of `DENSE_COLUMNS`: the best dense engine and the fastest kernel
    that skips zeros, its speed-up over that engine, its useful GFLOP/s, their share of the
    achievable peak, and the share of its time spent building the compressed form."""
    rows = []
    for r in report["cases"]:
        sparse = r["algorithms"].get(r["best_sparse"], {})
        rows.append(
            [
                r["id"],
                r["best_dense"],
                _fmt(r["best_dense_ms"], ".3f"),
                r["best_sparse"] or "-",
                _fmt(sparse.get("median_ms"), ".3f"),
                _fmt(r["sparse_vs_dense"], ".2f"),
                _fmt(sparse.get("useful_gflops"), ".1f"),
                _fmt(sparse.get("pct_peak"), ".0f"),
                _fmt(sparse.get("build_pct"), ".1f"),
            ]
        )
    return rows


def format_dense_summary(report: dict[str, Any]) -> str:
    """`dense_summary_rows` as an aligned text table, with a title."""
    rows = [list(DENSE_COLUMNS), *dense_summary_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(DENSE_COLUMNS))]
    lines = [
        (
            "against the best dense engine (speed-up = t_dense / t_sparse, > 1 = the kernel "
            "that skips zeros is faster; %peak of its useful GF/s)"
        )
    ]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _markdown_table(head: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def write_markdown(report: dict[str, Any], path: Path, images: list[Path]) -> Path:
    """results.md: the header, both summaries, the full table (as markdown) and the plots."""
    parts = ["# jaxcps bench results", "", *(f"- {line}" for line in _header(report))]
    parts += [
        "",
        "## Against the best dense engine",
        "",
        *_markdown_table(DENSE_COLUMNS, dense_summary_rows(report)),
    ]
    parts += ["", "## Time ratio to XLA", "", "```", format_summary(report), "```", ""]
    rows = [
        [record["id"], *_algorithm_row(name, m)]
        for record in report["cases"]
        for name, m in record["algorithms"].items()
    ]
    parts += ["## Per case", "", *_markdown_table(("case", *COLUMNS), rows)]
    parts += ["", *(f"![{p.stem}]({p.name})" for p in images), ""]
    path.write_text("\n".join(parts))
    return path
