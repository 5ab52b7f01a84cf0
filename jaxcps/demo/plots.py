"""PNG plots of a `jaxcps demo` run (matplotlib, part of the `demo` extra).

- `layers.png`: per layer, each candidate's speed-up over XLA, with the input's zero fraction
  as bars.
- `compression.png`: per layer, each candidate's compression ratio against im2col.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from jaxcps.plan import Plan


def plot_all(plan: Plan, e2e: dict[str, Any], out: str) -> list[str]:
    """Writes layers.png and compression.png into `out`; returns their file names.

    Args:
      plan: the selected plan, with its measurements and `meta` (model, profile,
        candidates).
      e2e: the end-to-end result; its speed-ups go into the title.
      out: the output folder.
    """
    records = plan.records
    labels = [r.path for r in records]
    positions = np.arange(len(records))
    candidates = [c for c in plan.meta.get("candidates", []) if c != "xla"]

    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(records)), 4.5))
    for c in candidates:
        ratio = [r.times["xla"] / r.times[c] if r.times.get(c) else np.nan for r in records]
        ax.plot(positions, ratio, marker="o", label=c)
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_ylabel("speed-up over XLA (higher is faster)")
    ax.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
    zeros = ax.twinx()
    zeros.bar(positions, [r.zero_fraction or 0 for r in records], alpha=0.15, color="k")
    zeros.set_ylabel("zero fraction of the input (bars)")
    zeros.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    versus_ort = (
        f", {e2e['speedup_vs_onnxruntime']:.2f}x vs ONNX Runtime"
        if e2e.get("speedup_vs_onnxruntime")
        else ""
    )
    ax.set_title(
        f"{plan.meta.get('model')} / {plan.meta.get('profile')}: per layer; "
        f"end-to-end {e2e['speedup']:.2f}x vs XLA{versus_ort}"
    )
    fig.tight_layout()
    fig.savefig(os.path.join(out, "layers.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(records)), 4.5))
    for c in candidates:
        if c == "im2col":  # the baseline itself
            continue
        cr = [
            r.footprints["im2col"] / r.footprints[c]
            if r.footprints.get(c) and r.footprints.get("im2col")
            else np.nan
            for r in records
        ]
        ax.plot(positions, cr, marker="o", label=c)
    ax.set_ylabel("compression ratio against im2col")
    ax.set_yscale("log")
    ax.set_xticks(positions, labels, rotation=60, ha="right", fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "compression.png"), dpi=110)
    plt.close(fig)
    return ["layers.png", "compression.png"]
