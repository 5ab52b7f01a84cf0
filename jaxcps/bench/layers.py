"""The conv layers that `jaxcps bench` times, and the suites built from them.

NHWC activations, HWIO weights, float32; a case runs a layer at one zero fraction and batch
size (1 unless the suite or `--batch` says otherwise).

- VGG-16: the 13 3x3 stride-1 SAME convolutions (Simonyan & Zisserman, configuration D).
- ResNet-50 v1.5 (torchvision): the 7x7/2 stem (padding 3) and the 16 3x3 convolutions of
  the bottleneck blocks. v1.5 puts the stride 2 of the first block of stages conv3, conv4 and
  conv5 on its 3x3 convolution (v1 puts it on the first 1x1), so `conv3_1`, `conv4_1` and
  `conv5_1` here are 3x3/2 with padding 1 on the previous stage's resolution.
- Inception-v3: the layers and input densities that the CPO/CPS authors list
  (`HossamAmer12/SPMv-trials`, their layer numbering), zero fraction = 1 - density.

The "own" zero fraction of a VGG/ResNet layer is an assumed profile, not a measurement
(no trained weights are available here): network inputs (RGB images) are dense; sparsity
then grows with depth as reported for trained CNNs (Cnvlutin: 44% zeros on average in conv
inputs; the Inception-v3 densities above: 41-54% zeros early, 83-86% late).

The `peers` suite holds the layers on which jaxcps is compared with the dense engines
(`--peers`) and tuned; `peers-holdout` holds layers of other shapes that stay out of that loop,
to check that what was tuned generalizes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

#: Zero fractions at which the `paper` suite also runs every VGG-16 and ResNet-50 layer.
SWEEP_ZEROS: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9, 0.95)

Padding = str | tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Layer:
    """One convolution: input (batch, h, w, c), kernel (kh, kw, c, o), stride, padding.

    Attributes:
      id: "<network>/<layer>", unique; what `--layers` matches.
      h, w, c: input height, width, channels.
      o: output channels.
      kh, kw: kernel height and width.
      stride: the same stride along both spatial axes.
      padding: "SAME", "VALID" or ((top, bottom), (left, right)).
      zeros: the layer's own (realistic) input zero fraction.
    """

    id: str
    h: int
    w: int
    c: int
    o: int
    kh: int
    kw: int
    stride: int
    padding: Padding
    zeros: float

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """The shape of one image's input."""
        return (1, self.h, self.w, self.c)

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        return (self.kh, self.kw, self.c, self.o)

    @property
    def strides(self) -> tuple[int, int]:
        return (self.stride, self.stride)

    def describe(self) -> str:
        """E.g. "14x14x512->512 3x3/1 SAME"."""
        pad = self.padding if isinstance(self.padding, str) else f"pad{self.padding[0][0]}"
        return f"{self.h}x{self.w}x{self.c}->{self.o} {self.kh}x{self.kw}/{self.stride} {pad}"


@dataclass(frozen=True)
class Case:
    """One benchmark case: a layer at one input zero fraction and batch size.

    Attributes:
      layer: the convolution.
      zeros: the input's zero fraction.
      batch: images per call (default: 1).
    """

    layer: Layer
    zeros: float
    batch: int = 1

    @property
    def id(self) -> str:
        """E.g. "vgg16/conv5_1@0.90", with "-b8" appended at batch 8."""
        suffix = f"-b{self.batch}" if self.batch != 1 else ""
        return f"{self.layer.id}@{self.zeros:.2f}{suffix}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.layer.h, self.layer.w, self.layer.c)


def _vgg16() -> list[Layer]:
    # (name, H=W, C in, C out, own zero fraction)
    table = [
        ("conv1_1", 224, 3, 64, 0.0),
        ("conv1_2", 224, 64, 64, 0.50),
        ("conv2_1", 112, 64, 128, 0.55),
        ("conv2_2", 112, 128, 128, 0.60),
        ("conv3_1", 56, 128, 256, 0.60),
        ("conv3_2", 56, 256, 256, 0.65),
        ("conv3_3", 56, 256, 256, 0.70),
        ("conv4_1", 28, 256, 512, 0.70),
        ("conv4_2", 28, 512, 512, 0.75),
        ("conv4_3", 28, 512, 512, 0.80),
        ("conv5_1", 14, 512, 512, 0.80),
        ("conv5_2", 14, 512, 512, 0.85),
        ("conv5_3", 14, 512, 512, 0.90),
    ]
    return [Layer(f"vgg16/{n}", s, s, c, o, 3, 3, 1, "SAME", z) for n, s, c, o, z in table]


def _resnet50() -> list[Layer]:
    layers = [Layer("resnet50/stem", 224, 224, 3, 64, 7, 7, 2, ((3, 3), (3, 3)), 0.0)]
    # (stage, blocks, input H=W of the stage's 3x3 convs at stride 1, width, own zeros)
    stages = [
        (2, 3, 56, 64, 0.50),
        (3, 4, 28, 128, 0.60),
        (4, 6, 14, 256, 0.70),
        (5, 3, 7, 512, 0.80),
    ]
    for stage, blocks, size, width, zeros in stages:
        for block in range(1, blocks + 1):
            name = f"resnet50/conv{stage}_{block}"
            if block == 1 and stage > 2:  # v1.5: the stride-2 3x3 on the previous resolution
                layers.append(
                    Layer(name, 2 * size, 2 * size, width, width, 3, 3, 2, ((1, 1), (1, 1)), zeros)
                )
            else:
                layers.append(Layer(name, size, size, width, width, 3, 3, 1, "SAME", zeros))
    return layers


def _inception3() -> list[Layer]:
    # (id, H=W in, C in, C out, KH, KW, padding, density) as listed by the paper's authors
    table = [
        (1, 149, 32, 32, 3, 3, "VALID", 0.59),
        (2, 147, 32, 64, 3, 3, "SAME", 0.46),
        (4, 71, 80, 192, 3, 3, "SAME", 0.48),
        (7, 35, 48, 64, 5, 5, "SAME", 0.48),
        (52, 17, 160, 160, 1, 7, "SAME", 0.14),
        (53, 17, 160, 192, 7, 1, "SAME", 0.17),
        (91, 8, 384, 384, 1, 3, "SAME", 0.14),
        (92, 8, 384, 384, 3, 1, "SAME", 0.14),
    ]
    return [
        Layer(f"inception3/L{i}", s, s, c, o, kh, kw, 1, pad, round(1.0 - d, 2))
        for i, s, c, o, kh, kw, pad, d in table
    ]


#: Every layer by id, in suite order.
LAYERS: dict[str, Layer] = {l.id: l for l in _vgg16() + _resnet50() + _inception3()}

#: Tiny layers for tests and CI smoke runs (not part of any network).
SMOKE_LAYERS: tuple[Layer, ...] = (
    Layer("smoke/3x3", 8, 8, 8, 16, 3, 3, 1, "SAME", 0.8),
    Layer("smoke/5x5s2", 9, 9, 4, 8, 5, 5, 2, "VALID", 0.5),
)

#: The `quick` suite: a few mid and late layers, under a minute on 2 cores.
QUICK_CASES: tuple[tuple[str, float], ...] = (
    ("vgg16/conv5_1", 0.5),
    ("vgg16/conv5_1", 0.9),
    ("resnet50/conv4_2", 0.7),
    ("resnet50/conv4_2", 0.9),
    ("resnet50/conv5_1", 0.8),
    ("inception3/L52", 0.86),
    ("inception3/L91", 0.86),
)

#: A 3x3 stride-2 layer with SAME padding (the odd pad at the end, as TensorFlow pads), unlike
#: ResNet-50 v1.5's stride-2 convs above, which pad 1 on both sides.
STRIDE2_SAME = Layer("stride2/28x28x256", 28, 28, 256, 256, 3, 3, 2, "SAME", 0.7)

#: The `peers` suite: the layers on which jaxcps is compared with the dense engines.
PEERS_LAYERS: tuple[Layer, ...] = (
    *(LAYERS[f"vgg16/conv{stage}_2"] for stage in (2, 3, 4, 5)),
    *(LAYERS[f"resnet50/conv{stage}_2"] for stage in (2, 3, 4, 5)),
    STRIDE2_SAME,
)
#: The `peers-holdout` suite: a 3x3, a 5x5, a 1x7 and a 1x3 of Inception-v3 and ResNet-50's
#: stride-2 3x3 from 56x56 to 28x28, none of them shaped like a `peers` layer.
PEERS_HOLDOUT_LAYERS: tuple[Layer, ...] = tuple(
    LAYERS[i]
    for i in (
        "inception3/L4",
        "inception3/L7",
        "inception3/L52",
        "inception3/L91",
        "resnet50/conv3_1",
    )
)
#: Zero fractions and batch sizes of both peers suites.
PEERS_ZEROS: tuple[float, ...] = (0.0, 0.5, 0.7, 0.9)
PEERS_BATCHES: tuple[int, ...] = (1, 8)

SUITES: tuple[str, ...] = ("quick", "paper", "peers", "peers-holdout", "smoke")


def _paper_cases() -> list[Case]:
    cases = []
    for layer in LAYERS.values():
        zeros = [layer.zeros]
        if not layer.id.startswith("inception3/"):
            zeros += [z for z in SWEEP_ZEROS if z != layer.zeros]
        cases += [Case(layer, z) for z in sorted(zeros)]
    return cases


def _sweep(layers: Sequence[Layer]) -> list[Case]:
    return [Case(layer, z, b) for layer in layers for b in PEERS_BATCHES for z in PEERS_ZEROS]


def suite_cases(suite: str) -> list[Case]:
    """The cases of `suite` (one of `SUITES`), in run order."""
    if suite == "paper":
        return _paper_cases()
    if suite == "quick":
        return [Case(LAYERS[layer_id], z) for layer_id, z in QUICK_CASES]
    if suite == "peers":
        return _sweep(PEERS_LAYERS)
    if suite == "peers-holdout":
        return _sweep(PEERS_HOLDOUT_LAYERS)
    if suite == "smoke":
        return [Case(layer, layer.zeros) for layer in SMOKE_LAYERS]
    raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")


def matches(layer_id: str, patterns: Sequence[str]) -> bool:
    """True if a glob of `patterns` matches `layer_id` or a part of it ("conv5_*", "resnet")."""
    return any(fnmatch.fnmatchcase(layer_id, f"*{p}*") for p in patterns)


def select_cases(
    suite: str,
    layers: Sequence[str] | None = None,
    zeros: Sequence[float] | None = None,
    batches: Sequence[int] | None = None,
) -> list[Case]:
    """The cases of `suite`, filtered by layer patterns, at the given zero fractions and batches.

    Args:
      suite: one of `SUITES`.
      layers: glob patterns or substrings of layer ids (default: every layer of the suite).
      zeros: if given, every selected layer runs at each of these zero fractions instead of
        the suite's own.
      batches: if given, every selected layer runs at each of these batch sizes instead of
        the suite's own.

    Returns:
      The cases, per layer each batch size at each zero fraction, in suite order.

    Raises:
      ValueError: for an unknown suite, a zero fraction outside [0, 1], a batch size below 1,
        or an empty selection.
    """
    cases = suite_cases(suite)
    if layers:
        cases = [c for c in cases if matches(c.layer.id, layers)]
    if zeros is not None:
        bad = [z for z in zeros if not 0.0 <= z <= 1.0]
        if bad:
            raise ValueError(f"zeros must be in [0, 1], got {bad}")
    if batches is not None:
        bad = [b for b in batches if b < 1]
        if bad:
            raise ValueError(f"batch sizes must be >= 1, got {bad}")
    if zeros is not None or batches is not None:
        cases = _override(cases, zeros, batches)
    if not cases:
        raise ValueError(f"no layer of suite {suite!r} matches --layers {list(layers or [])}")
    return cases


def _override(
    cases: list[Case], zeros: Sequence[float] | None, batches: Sequence[int] | None
) -> list[Case]:
    """Each layer of `cases` at `zeros` × `batches`, either one defaulting to the layer's own."""
    by_layer: dict[Layer, list[Case]] = {}
    for case in cases:
        by_layer.setdefault(case.layer, []).append(case)
    result = []
    for layer, own in by_layer.items():
        layer_zeros = zeros if zeros is not None else list(dict.fromkeys(c.zeros for c in own))
        layer_batches = (
            batches if batches is not None else list(dict.fromkeys(c.batch for c in own))
        )
        result += [Case(layer, z, b) for b in layer_batches for z in layer_zeros]
    return result
