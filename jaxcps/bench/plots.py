"""PNG plots of a `jaxcps bench` report (matplotlib, the optional `bench` extra).

- `ratio_vs_zeros.png`: time ratio to XLA (t_xla / t) against the input zero fraction, one
  panel per network, one line per layer and algorithm that skips zeros (CPO solid, CPS
  dashed).
- `compression.png`: compression ratio of every other algorithm with a footprint (MEC, CPO,
  CPS) against im2col, and of those that skip zeros against MEC, per layer at its own zero
  fraction (or per case if none ran at it).

With `--peers`, also, one panel per batch size and one line per layer, the targets marked:
- `dense_ratio.png`: speed-up of the fastest kernel that skips zeros over the best dense
  engine, against the input zero fraction.
- `peak_share.png`: that kernel's useful GFLOP/s as a share of the achievable peak.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from jaxcps.bench import targets
from jaxcps.bench.layers import LAYERS
from jaxcps.bench.report import SPARSE
from jaxcps.footprint import FOOTPRINT_ALGORITHMS

# (line style, its name, marker) per algorithm that skips zeros, in order.
_LINES = (("-", "solid", "o"), ("--", "dashed", "s"), (":", "dotted", "^"), ("-.", "dash-dot", "D"))


def plot_all(report: dict[str, Any], out: Path) -> list[Path]:
    """Writes the plots into `out` (the peers plots if the run had `--peers`); returns their
    paths."""
    paths = [
        plot_ratio(report, out / "ratio_vs_zeros.png"),
        plot_compression(report, out / "compression.png"),
    ]
    if report["settings"].get("peers"):
        paths += [
            plot_dense_ratio(report, out / "dense_ratio.png"),
            plot_peak_share(report, out / "peak_share.png"),
        ]
    return paths


def _network(layer_id: str) -> str:
    return layer_id.split("/", 1)[0]


def _in_report(report: dict[str, Any], algorithms: tuple[str, ...]) -> list[str]:
    """The `algorithms` that every case of `report` measured."""
    return [a for a in algorithms if all(a in r["algorithms"] for r in report["cases"])]


def plot_ratio(report: dict[str, Any], path: Path) -> Path:
    """Time ratio to XLA against zero fraction, per layer and algorithm that skips zeros."""
    styles = dict(zip(_in_report(report, SPARSE), itertools.cycle(_LINES)))
    series: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in report["cases"]:
        for alg in styles:
            series[r["layer"]][alg].append((r["zeros"], r["algorithms"][alg]["ratio_to_xla"]))
    networks = sorted({_network(layer) for layer in series})
    fig, axes = plt.subplots(
        1,
        len(networks),
        figsize=(6.5 * len(networks), 5.2),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for ax, network in zip(axes[0], networks):
        layers = [layer for layer in series if _network(layer) == network]
        palette = plt.get_cmap("tab20" if len(layers) > 10 else "tab10")
        colors = [palette(i % palette.N) for i in range(len(layers))]
        for layer, color in zip(layers, colors):
            for alg, (linestyle, _, marker) in styles.items():
                zs, ratios = zip(*sorted(series[layer][alg]))
                ax.plot(
                    zs,
                    ratios,
                    linestyle=linestyle,
                    marker=marker,
                    color=color,
                    markersize=4,
                    label=f"{layer.split('/', 1)[1]} {alg}",
                )
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_title(network)
        ax.set_xlabel("input zero fraction")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2 if len(layers) > 6 else 1, loc="upper left")
    axes[0][0].set_ylabel("t_xla / t  (> 1: faster than XLA; log scale)")
    legend = ", ".join(f"{alg.upper()} {name}" for alg, (_, name, _) in styles.items())
    fig.suptitle(_subtitle(report, f"time ratio to XLA's convolution: {legend}"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _compression_cases(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per layer its case at its own zero fraction, or all its cases if none ran at it."""
    by_layer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in report["cases"]:
        by_layer[r["layer"]].append(r)
    chosen = []
    for layer, cases in by_layer.items():
        own = [
            r for r in cases if layer in LAYERS and targets.near(r["zeros"], LAYERS[layer].zeros)
        ]
        chosen += own or cases
    return chosen


def plot_compression(report: dict[str, Any], path: Path) -> Path:
    """Horizontal bars: CR vs im2col (MEC, CPO, CPS) and CR vs MEC (CPO, CPS), log scale."""
    cases = _compression_cases(report)
    fig, axes = plt.subplots(1, 2, figsize=(13, max(3.2, 1.8 + 0.34 * len(cases))), sharey=True)
    compressed = _in_report(report, tuple(a for a in FOOTPRINT_ALGORITHMS if a != "im2col"))
    colors = {alg: f"C{i}" for i, alg in enumerate(compressed)}
    panels = [
        ("cr_vs_im2col", compressed, "CR vs im2col"),
        ("cr_vs_mec", [a for a in compressed if a in SPARSE], "CR vs MEC"),
    ]
    for ax, (key, algs, title) in zip(axes, panels):
        height = 0.8 / len(algs)
        for i, alg in enumerate(algs):
            values = [r["algorithms"][alg][key] for r in cases]
            ys = [j + (i - (len(algs) - 1) / 2) * height for j in range(len(cases))]
            bars = ax.barh(ys, values, height=height, color=colors[alg], label=alg)
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=2)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlim(right=ax.get_xlim()[1] * 1.6)  # room for the value labels
        ax.set_title(title + " (footprint bytes, values + indices)", fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0].set_yticks(range(len(cases)), [r["id"] for r in cases], fontsize=7)
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(compressed), fontsize=8)
    fig.suptitle(_subtitle(report, "compression ratio per layer (layer@zero fraction)"))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _by_batch(
    report: dict[str, Any], value: Callable[[dict[str, Any]], float | None]
) -> dict[int, dict[str, list[tuple[float, float]]]]:
    """batch -> layer -> sorted (zero fraction, value) points, cases without a value left out."""
    series: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in report["cases"]:
        y = value(r)
        if y is not None:
            series[r["batch"]][r["layer"]].append((r["zeros"], y))
    return {
        b: {layer: sorted(points) for layer, points in layers.items()}
        for b, layers in sorted(series.items())
    }


def _plot_per_batch(
    report: dict[str, Any],
    path: Path,
    value: Callable[[dict[str, Any]], float | None],
    goals: dict[float, float],
    *,
    reference: float,
    ylabel: str,
    title: str,
    log: bool,
) -> Path:
    """One panel per batch size, one line per layer, a horizontal line at `reference`, and
    the targets `goals` (zero fraction -> value) as stars."""
    series = _by_batch(report, value)
    layers = list(dict.fromkeys(r["layer"] for r in report["cases"]))
    palette = plt.get_cmap("tab20" if len(layers) > 10 else "tab10")
    colors = {layer: palette(i % palette.N) for i, layer in enumerate(layers)}
    panels = max(len(series), 1)
    fig, axes = plt.subplots(
        1, panels, figsize=(max(6.5 * panels, 9.0), 5.6), sharex=True, sharey=True, squeeze=False
    )
    for ax, (batch, per_layer) in zip(axes[0], series.items(), strict=False):
        for layer, points in per_layer.items():
            zs, ys = zip(*points, strict=True)
            ax.plot(zs, ys, marker="o", markersize=4, color=colors[layer], label=layer)
        ax.axhline(reference, color="black", linewidth=1)
        ax.plot(
            list(goals),
            list(goals.values()),
            linestyle="none",
            marker="*",
            markersize=14,
            color="crimson",
            label="target",
        )
        if log:
            ax.set_yscale("log", base=2)
            ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("input zero fraction")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel(ylabel)
    fig.suptitle(_subtitle(report, title))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_dense_ratio(report: dict[str, Any], path: Path) -> Path:
    """Speed-up of the fastest kernel that skips zeros over the best dense engine."""
    engines = ", ".join(["xla", *report["settings"]["peers"]["engines"]])
    return _plot_per_batch(
        report,
        path,
        lambda r: r["sparse_vs_dense"],
        targets.SPEEDUP_OVER_DENSE,
        reference=1.0,
        log=True,
        ylabel="t_dense / t_sparse  (> 1: jaxcps faster; log scale)",
        title=f"speed-up of the fastest of {', '.join(SPARSE)} over the best dense engine\n"
        f"(the fastest of {engines})",
    )


def plot_peak_share(report: dict[str, Any], path: Path) -> Path:
    """Useful GFLOP/s of the fastest kernel that skips zeros, as % of the achievable peak."""
    peak = report["peak"]["achievable_gflops"]
    return _plot_per_batch(
        report,
        path,
        lambda r: r["algorithms"][r["best_sparse"]]["pct_peak"] if r["best_sparse"] else None,
        targets.PEAK_SHARE_PCT,
        reference=100.0,
        log=False,
        ylabel="useful GFLOP/s, % of the achievable peak",
        title=f"useful GFLOP/s of the fastest of {', '.join(SPARSE)}\nas a share of the "
        f"achievable peak ({peak:.0f} GFLOP/s)",
    )


def _subtitle(report: dict[str, Any], what: str) -> str:
    m, s = report["machine"], report["settings"]
    return (
        f"{what}\n{s['zeros_placement']} zeros, {m['threads']} threads, ISA {m['isa']}, "
        f"jaxlib {m['jaxlib']}, {m['date'][:10]}"
    )
