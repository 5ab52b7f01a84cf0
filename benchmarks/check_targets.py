"""Checks a recorded `paper` run against the performance targets taken from the CPO/CPS paper.

    python benchmarks/check_targets.py benchmarks/results/paper/bench.json [--dense DENSE.json]

Prints a markdown table: each target, the layers it covers, the measured figure (the worst
case over those layers) and whether it is met. Speed figures come from the bench JSON (ratios
within one interleaved run); compression ratios at exactly 85% zeros are computed here with
`jaxcps.footprint` on the suite's seeded activations (no timing involved). `--dense` takes a
run at 0% zeros (`jaxcps bench --suite paper --zeros 0 ...`) for the baseline-honesty target.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
from collections.abc import Callable, Iterable

import jaxcps
from jaxcps.bench.activations import relu_activation
from jaxcps.bench.layers import LAYERS
from jaxcps.bench.targets import near

#: The paper's two algorithms, which its targets name.
SPARSE = ("cpo", "cps")
#: The layers the speed targets name: VGG-16 conv3_x-conv5_x, ResNet-50's 14x14 and 7x7 3x3
#: convolutions (conv4_x, conv5_x), Inception-v3 layers 52, 53, 91, 92.
TARGET_LAYERS = (
    "vgg16/conv3_*",
    "vgg16/conv4_*",
    "vgg16/conv5_*",
    "resnet50/conv4_*",
    "resnet50/conv5_*",
    "inception3/L52",
    "inception3/L53",
    "inception3/L91",
    "inception3/L92",
)


def _in_targets(layer: str) -> bool:
    return any(fnmatch.fnmatch(layer, pattern) for pattern in TARGET_LAYERS)


def _best_sparse(case: dict) -> tuple[str, float]:
    """The faster of CPO and CPS in this case, and its time ratio to XLA."""
    name = max(SPARSE, key=lambda a: case["algorithms"][a]["ratio_to_xla"])
    return name, case["algorithms"][name]["ratio_to_xla"]


def _worst(cases: Iterable[dict], value: Callable[[dict], float]) -> tuple[float, str]:
    pairs = [(value(c), c["id"]) for c in cases]
    return min(pairs) if pairs else (float("nan"), "-")


def _speed_rows(cases: list[dict]) -> list[tuple[str, str, float, str, bool]]:
    target = [c for c in cases if _in_targets(c["layer"])]
    inception = [c for c in target if c["layer"].startswith("inception3/")]
    rows = []
    for zeros, goal in ((0.90, 2.0), (0.70, 1.2)):
        worst, where = _worst(
            [c for c in target if near(c["zeros"], zeros)], lambda c: _best_sparse(c)[1]
        )
        rows.append(
            (
                f"best of CPO/CPS vs XLA at {zeros:.0%} zeros >= {goal}x",
                "VGG conv3-5, ResNet 14²/7²",
                worst,
                where,
                worst >= goal,
            )
        )
    worst, where = _worst(inception, lambda c: _best_sparse(c)[1])
    rows.append(
        (
            "best of CPO/CPS vs XLA at the layer's own density >= 2x",
            "Inception 52, 53, 91, 92",
            worst,
            where,
            worst >= 2.0,
        )
    )
    worst, where = _worst(
        [c for c in target if near(c["zeros"], 0.70)], lambda c: _best_sparse(c)[1]
    )
    rows.append(
        ("crossover at <= 70% zeros (ratio >= 1 at 70%)", "same", worst, where, worst >= 1.0)
    )
    high = [c for c in cases if c["zeros"] >= 0.85]
    for label, subset in (
        ("target layers", [c for c in high if _in_targets(c["layer"])]),
        ("all layers", high),
    ):
        worst, where = _worst(
            subset, lambda c: max(c["algorithms"][a]["saving_vs_im2col_pct"] for a in SPARSE)
        )
        rows.append(
            ("time saving vs im2col at >= 85% zeros >= 63%", label, worst, where, worst >= 63.0)
        )
        worst, where = _worst(
            subset,
            lambda c: max(
                100.0
                * (1.0 - c["algorithms"][a]["median_ms"] / c["algorithms"]["mec"]["median_ms"])
                for a in SPARSE
            ),
        )
        rows.append(
            (
                "faster than parallel MEC at >= 85% zeros by >= 28%",
                label,
                worst,
                where,
                worst >= 28.0,
            )
        )
    target_cases = [c for c in cases if _in_targets(c["layer"])]
    for name in SPARSE:
        shares = sorted(
            (c["algorithms"][name]["build_pct"], c["id"])
            for c in target_cases
            if c["algorithms"][name].get("build_pct") is not None
        )
        over = sum(share > 15.0 for share, _ in shares)
        median = shares[len(shares) // 2][0]
        target = (
            f"{name}: building the compressed form <= 15% of its time (worst; median "
            f"{median:.0f}%, {over} of {len(shares)} cases over 15%)"
        )
        rows.append((target, "target layers", shares[-1][0], shares[-1][1], shares[-1][0] <= 15.0))
    return rows


def _compression_rows(seed: int = 0) -> list[tuple[str, str, float, str, bool]]:
    """CR of CPO and CPS at exactly 85% zeros on every 3x3 stride-1 layer of the suite."""
    crs: dict[str, list[tuple[float, str]]] = {"im2col": [], "mec": []}
    for layer in LAYERS.values():
        if layer.kernel_shape[:2] != (3, 3) or layer.strides != (1, 1):
            continue
        x = relu_activation(layer.input_shape, 0.85, seed=seed)
        size = {
            a: jaxcps.footprint(x, layer.kernel_shape, layer.strides, layer.padding, a)
            for a in ("im2col", "mec", "cpo", "cps")
        }
        best = min(size["cpo"], size["cps"])
        crs["im2col"].append((size["im2col"] / best, layer.id))
        crs["mec"].append((size["mec"] / best, layer.id))
    rows = []
    for base, goal in (("im2col", 26.0), ("mec", 9.2)):
        worst, where = min(crs[base])
        best, best_where = max(crs[base])
        target = f"CR vs {base} at 85% zeros >= {goal}x (worst; best {best:.1f}x at {best_where})"
        rows.append((target, "3x3 stride-1 layers", worst, where, worst >= goal))
    return rows


def _dense_rows(path: str) -> list[tuple[str, str, float, str, bool]]:
    with open(path) as f:
        cases = json.load(f)["cases"]
    rows = []
    for name in ("im2col", "mec"):
        worst, where = _worst(cases, lambda c, name=name: c["algorithms"][name]["ratio_to_xla"])
        rows.append(
            (
                f"{name} within 1.5x of XLA at 0% zeros (ratio >= 0.67)",
                "all layers",
                worst,
                where,
                worst >= 1 / 1.5,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", help="bench.json of a `paper` run")
    parser.add_argument("--dense", help="bench.json of a run at 0%% zeros")
    args = parser.parse_args()
    with open(args.bench_json) as f:
        cases = json.load(f)["cases"]
    rows = _speed_rows(cases) + _compression_rows()
    if args.dense:
        rows += _dense_rows(args.dense)
    print("| target | layers | measured (worst) | where | met |")
    print("|---|---|---|---|---|")
    for target, layers, value, where, met in rows:
        print(f"| {target} | {layers} | {value:.2f} | {where} | {'yes' if met else 'NO'} |")


if __name__ == "__main__":
    main()
