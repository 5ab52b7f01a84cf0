"""Small CNNs for examples and the demo, and bias calibration to a sparsity profile.

- `VGG16`, `ResNet18`, `ResNet50` (linen) and `VGG16NNX`, `ResNet18NNX`, `ResNet50NNX`
  (NNX): the VGG-16, ResNet-18 and ResNet-50 conv stacks with a `width` multiplier on every
  channel count, global average pooling and a dense classifier. No normalization layers: at
  inference a batch norm folds into the conv before it (scaled kernel, shifted bias), so a
  conv with a bias stands for both. Module paths are the same in both frameworks
  ("stage3_conv2", "stage2_block1/conv1", ...).
- `calibrate_linen` / `calibrate_nnx`: set each conv's bias so that the activation feeding
  the next conv has the zero fraction that a profile gives for that depth on a sample input.
  Profiles: "rising" (50% zeros at the second conv rising to 90% at the last), "inception"
  (the Inception-v3 input densities the paper's authors list, the same as in
  `jaxcps.bench.layers`, placed by layer number over depth) and "moderate" (40% rising to
  60%, what trained ResNets show).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxcps.flax._hooks import nnx_convs, swap_convs

#: (features, convs) per VGG-16 stage; a 2x2 max-pool follows each stage.
VGG16_STAGES: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
#: (features, blocks, stride) per ResNet-18 stage.
RESNET18_STAGES: tuple[tuple[int, int, int], ...] = (
    (64, 2, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 2, 2),
)
#: (bottleneck features, blocks, stride) per ResNet-50 stage; a block's output has 4x the
#: bottleneck features.
RESNET50_STAGES: tuple[tuple[int, int, int], ...] = (
    (64, 3, 1),
    (128, 4, 2),
    (256, 6, 2),
    (512, 3, 2),
)
RESNET50_EXPANSION = 4
#: The sparsity profiles `calibrate_*` accept.
PROFILES: tuple[str, ...] = ("rising", "inception", "moderate")
#: Inception-v3 (layer number, input density) as the paper's authors list them (the layers
#: of `jaxcps.bench.layers`); Inception-v3 has 94 convs.
_INCEPTION_DENSITIES = (
    (1, 0.59),
    (2, 0.46),
    (4, 0.48),
    (7, 0.48),
    (52, 0.14),
    (53, 0.17),
    (91, 0.14),
    (92, 0.14),
)
_INCEPTION_CONVS = 94


def scaled(features: int, width: float) -> int:
    """Channel count `features * width`, rounded, at least 4."""
    return max(4, round(features * width))


# ----------------------------------------------------------------------------- linen


class VGG16(nn.Module):
    """VGG-16's 13 3x3 convs (ReLU, 2x2 max-pool after each stage), average pool, dense.

    Attributes:
      width: multiplier on every channel count (default: 1.0).
      num_classes: outputs of the classifier (default: 10).
    """

    width: float = 1.0
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for s, (features, convs) in enumerate(VGG16_STAGES, 1):
            for c in range(1, convs + 1):
                conv = nn.Conv(scaled(features, self.width), (3, 3), name=f"stage{s}_conv{c}")
                x = nn.relu(conv(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
        return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


class BasicBlock(nn.Module):
    """ResNet's basic block: 1x1 projection when the shape changes, two 3x3 convs."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = x
        if self.strides != 1 or x.shape[-1] != self.features:
            shortcut = nn.Conv(self.features, (1, 1), self.strides, name="proj")(x)
        h = nn.relu(nn.Conv(self.features, (3, 3), self.strides, name="conv1")(x))
        h = nn.Conv(self.features, (3, 3), name="conv2")(h)
        return nn.relu(h + shortcut)


def _resnet(
    x: jax.Array,
    stages: tuple[tuple[int, int, int], ...],
    block: type[nn.Module],
    width: float,
    num_classes: int,
) -> jax.Array:
    """The body of a linen ResNet, called from its compact `__call__` (the submodules bind to
    that module): 7x7/2 stem, 3x3/2 max-pool, `stages` of `block`s (stride on each stage's
    first), average pool, dense head. Paths "stem", "stage<s>_block<b>", "head"."""
    x = nn.relu(nn.Conv(scaled(64, width), (7, 7), 2, name="stem")(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
    for s, (features, blocks, stride) in enumerate(stages, 1):
        for b in range(1, blocks + 1):
            x = block(scaled(features, width), stride if b == 1 else 1, name=f"stage{s}_block{b}")(
                x
            )
    return nn.Dense(num_classes, name="head")(x.mean(axis=(1, 2)))


class ResNet18(nn.Module):
    """ResNet-18: 7x7/2 stem and 3x3/2 max-pool, 4 stages of 2 basic blocks, average pool,
    dense (no batch norm).

    Attributes:
      width: multiplier on every channel count (default: 1.0).
      num_classes: outputs of the classifier (default: 10).
    """

    width: float = 1.0
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _resnet(x, RESNET18_STAGES, BasicBlock, self.width, self.num_classes)


class Bottleneck(nn.Module):
    """ResNet-50's bottleneck block: 1x1 reduce, 3x3 (carrying the stride, as in v1.5), 1x1
    expand to 4x the features; a 1x1 projection when the shape changes."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = RESNET50_EXPANSION * self.features
        shortcut = x
        if self.strides != 1 or x.shape[-1] != out:
            shortcut = nn.Conv(out, (1, 1), self.strides, name="proj")(x)
        h = nn.relu(nn.Conv(self.features, (1, 1), name="conv1")(x))
        h = nn.relu(nn.Conv(self.features, (3, 3), self.strides, name="conv2")(h))
        h = nn.Conv(out, (1, 1), name="conv3")(h)
        return nn.relu(h + shortcut)


class ResNet50(nn.Module):
    """ResNet-50: 7x7/2 stem and 3x3/2 max-pool, 4 stages of 3, 4, 6, 3 bottleneck blocks,
    average pool, dense (batch norms folded into the convs' biases).

    Attributes:
      width: multiplier on every channel count (default: 1.0).
      num_classes: outputs of the classifier (default: 10).
    """

    width: float = 1.0
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return _resnet(x, RESNET50_STAGES, Bottleneck, self.width, self.num_classes)


# ----------------------------------------------------------------------------- NNX


class VGG16NNX(nnx.Module):
    """`VGG16` in NNX, with the same attribute paths ("stage1_conv1", ..., "head").

    Args:
      width: multiplier on every channel count (default: 1.0).
      num_classes: outputs of the classifier (default: 10).
      in_features: input channels (default: 3).
      rngs: the `nnx.Rngs` for parameter initialization.
    """

    def __init__(
        self, width: float = 1.0, num_classes: int = 10, in_features: int = 3, *, rngs: nnx.Rngs
    ):
        self.stages: list[list[str]] = []
        for s, (features, convs) in enumerate(VGG16_STAGES, 1):
            names = []
            for c in range(1, convs + 1):
                out = scaled(features, width)
                setattr(self, f"stage{s}_conv{c}", nnx.Conv(in_features, out, (3, 3), rngs=rngs))
                names.append(f"stage{s}_conv{c}")
                in_features = out
            self.stages.append(names)
        self.head = nnx.Linear(in_features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for names in self.stages:
            for name in names:
                x = nnx.relu(getattr(self, name)(x))
            x = nnx.max_pool(x, (2, 2), (2, 2))
        return self.head(x.mean(axis=(1, 2)))


class BasicBlockNNX(nnx.Module):
    """`BasicBlock` in NNX (attributes "proj" when the shape changes, "conv1", "conv2")."""

    def __init__(self, in_features: int, features: int, strides: int = 1, *, rngs: nnx.Rngs):
        projected = strides != 1 or in_features != features
        # Assigned once: NNX fixes an attribute as data or static at its first assignment.
        self.proj = (
            nnx.Conv(in_features, features, (1, 1), strides, rngs=rngs) if projected else None
        )
        self.conv1 = nnx.Conv(in_features, features, (3, 3), strides, rngs=rngs)
        self.conv2 = nnx.Conv(features, features, (3, 3), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = self.proj(x) if self.proj is not None else x
        h = nnx.relu(self.conv1(x))
        return nnx.relu(self.conv2(h) + shortcut)


class BottleneckNNX(nnx.Module):
    """`Bottleneck` in NNX (attributes "proj" when the shape changes, "conv1" to "conv3")."""

    def __init__(self, in_features: int, features: int, strides: int = 1, *, rngs: nnx.Rngs):
        out = RESNET50_EXPANSION * features
        projected = strides != 1 or in_features != out
        # Assigned once: NNX fixes an attribute as data or static at its first assignment.
        self.proj = nnx.Conv(in_features, out, (1, 1), strides, rngs=rngs) if projected else None
        self.conv1 = nnx.Conv(in_features, features, (1, 1), rngs=rngs)
        self.conv2 = nnx.Conv(features, features, (3, 3), strides, rngs=rngs)
        self.conv3 = nnx.Conv(features, out, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = self.proj(x) if self.proj is not None else x
        h = nnx.relu(self.conv1(x))
        h = nnx.relu(self.conv2(h))
        return nnx.relu(self.conv3(h) + shortcut)


class _ResNetNNX(nnx.Module):
    """A ResNet in NNX: a 7x7 stem, max-pooling, `stages` of `block`s, a linear head.

    Attribute paths are "stem", "stage<s>_block<b>" and "head", as in the linen models. A
    stage (channels, blocks, stride) puts `stride` on its first block; a block of c channels
    outputs `expansion * c`.
    """

    def __init__(
        self,
        stages: tuple[tuple[int, int, int], ...],
        block: type[nnx.Module],
        expansion: int,
        width: float,
        num_classes: int,
        in_features: int,
        rngs: nnx.Rngs,
    ):
        features = scaled(64, width)
        self.stem = nnx.Conv(in_features, features, (7, 7), 2, rngs=rngs)
        self.blocks: list[str] = []
        for s, (stage_features, blocks, stride) in enumerate(stages, 1):
            for b in range(1, blocks + 1):
                channels = scaled(stage_features, width)
                module = block(features, channels, stride if b == 1 else 1, rngs=rngs)
                setattr(self, f"stage{s}_block{b}", module)
                self.blocks.append(f"stage{s}_block{b}")
                features = expansion * channels
        self.head = nnx.Linear(features, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.stem(x))
        x = nnx.max_pool(x, (3, 3), (2, 2), padding="SAME")
        for name in self.blocks:
            x = getattr(self, name)(x)
        return self.head(x.mean(axis=(1, 2)))


class ResNet18NNX(_ResNetNNX):
    """`ResNet18` in NNX, with the same attribute paths ("stem", "stage2_block1/conv1", ...).

    Args:
      width: multiplier on every channel count (default: 1.0).
      num_classes: outputs of the classifier (default: 10).
      in_features: input channels (default: 3).
      rngs: the `nnx.Rngs` for parameter initialization.
    """

    def __init__(
        self, width: float = 1.0, num_classes: int = 10, in_features: int = 3, *, rngs: nnx.Rngs
    ):
        super().__init__(RESNET18_STAGES, BasicBlockNNX, 1, width, num_classes, in_features, rngs)


class ResNet50NNX(_ResNetNNX):
    """`ResNet50` in NNX, with the same attribute paths ("stem", "stage2_block1/conv2", ...).

    Args:
      width: multiplier on every channel count (default: 1.0).
      num_classes: outputs of the classifier (default: 10).
      in_features: input channels (default: 3).
      rngs: the `nnx.Rngs` for parameter initialization.
    """

    def __init__(
        self, width: float = 1.0, num_classes: int = 10, in_features: int = 3, *, rngs: nnx.Rngs
    ):
        super().__init__(
            RESNET50_STAGES,
            BottleneckNNX,
            RESNET50_EXPANSION,
            width,
            num_classes,
            in_features,
            rngs,
        )


#: name -> (linen class, NNX class)
MODELS: dict[str, tuple[type[nn.Module], type[nnx.Module]]] = {
    "vgg16": (VGG16, VGG16NNX),
    "resnet18": (ResNet18, ResNet18NNX),
    "resnet50": (ResNet50, ResNet50NNX),
}


# ----------------------------------------------------------------------------- calibration


def profile_zero_fraction(profile: str, depth: float) -> float:
    """Target zero fraction of a conv input at relative depth `depth` in [0, 1].

    Raises:
      ValueError: for a profile not in `PROFILES`.
    """
    if profile == "rising":
        return 0.5 + 0.4 * depth
    if profile == "moderate":
        return 0.4 + 0.2 * depth
    if profile == "inception":
        ids, densities = zip(*_INCEPTION_DENSITIES)
        where = 1 + depth * (_INCEPTION_CONVS - 1)
        return 1.0 - float(np.interp(where, ids, densities))
    raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


def profile_targets(profile: str, num_convs: int) -> list[float]:
    """Target zero fraction of each conv's input, in execution order. The first conv reads
    the image, so its entry is only nominal (0.0)."""
    depths = [i / max(num_convs - 1, 1) for i in range(num_convs)]
    return [0.0] + [profile_zero_fraction(profile, d) for d in depths[1:]]


def _bias_deltas(
    fn: Callable[[jax.Array], jax.Array],
    x: jax.Array,
    targets: Sequence[float] | str,
    models: Sequence[nnx.Module],
    steps: int = 14,
    tolerance: float = 0.004,
) -> dict[str, np.ndarray]:
    """Per conv path, the bias change that gives each next conv's input its target zeros.

    Convs are calibrated in execution order. For conv k, bias -quantile_q(pre-activation)
    per channel makes a fraction q of each channel's outputs non-positive; q is bisected
    until the input of conv k+1 (after ReLU, pooling, residual adds) has the target zero
    fraction. A conv whose bias does not reach the next conv's input keeps its bias.
    """
    store: dict[str, tuple[jax.Array, jax.Array]] = {}
    order: list[str] = []  # execution order, filled when the forward pass is traced
    active: dict[str, jax.Array] = {}  # the deltas of the forward pass being traced

    def recorder(path: str) -> Callable[..., jax.Array]:
        def conv(lhs, rhs, *args, **kwargs):
            kwargs.pop("out_sharding", None)
            y = jax.lax.conv_general_dilated(lhs, rhs, *args, **kwargs)
            store[path] = (jnp.mean(lhs == 0), y)
            if path not in order:
                order.append(path)
            return y + active.get(path, 0.0)

        return conv

    @jax.jit
    def traced(deltas, x):  # x is an argument: as a constant, XLA would fold the whole net
        store.clear()
        active.clear()
        active.update(deltas)
        fn(x)
        return dict(store)

    def forward(deltas):
        with swap_convs(lambda path, m: recorder(path), models):
            return traced(deltas, x)

    first = forward({})
    paths = list(order)
    if isinstance(targets, str):
        targets = profile_targets(targets, len(paths))
    deltas = {p: jnp.zeros(first[p][1].shape[-1], first[p][1].dtype) for p in paths}

    def zeros_at(k: int, between: np.ndarray, q: float) -> tuple[float, jax.Array]:
        """The zeros of conv k+1's input when conv k's bias cuts at quantile q, and the cut."""
        # Rows differ by channel by up to one, so that the mean fraction varies finely.
        rows = q * between.shape[0] + np.arange(between.shape[1]) / between.shape[1]
        rows = np.minimum(rows.astype(int), between.shape[0] - 1)
        delta = jnp.asarray(-between[rows, np.arange(between.shape[1])])
        return float(forward({**deltas, paths[k]: delta})[paths[k + 1]][0]), delta

    for k in range(len(paths) - 1):
        pre = np.asarray(forward(deltas)[paths[k]][1])
        pre = np.sort(pre.reshape(-1, pre.shape[-1]), axis=0)
        # Thresholds halfway between neighbouring values, so that rounding differences
        # between compiled and eager convs do not move elements across them.
        top = pre[-1:] + np.abs(pre[-1:]) + 1.0
        between = (pre + np.concatenate([pre[1:], top])) / 2
        low, high = 0.0, 1.0
        low_zeros, _ = zeros_at(k, between, low)
        high_zeros, _ = zeros_at(k, between, high)
        if high_zeros - low_zeros < tolerance:
            continue  # this bias does not reach the next conv's input
        q, best = targets[k + 1], None
        for _ in range(steps):
            zeros, delta = zeros_at(k, between, q)
            if best is None or abs(zeros - targets[k + 1]) < abs(best[0] - targets[k + 1]):
                best = (zeros, delta)
            if abs(zeros - targets[k + 1]) < tolerance:
                break
            low, high = (q, high) if zeros < targets[k + 1] else (low, q)
            q = (low + high) / 2
        deltas[paths[k]] = best[1]
    return {p: np.asarray(d) for p, d in deltas.items()}


def calibrate_linen(
    model: nn.Module, variables: Any, x: jax.Array, profile: str | Sequence[float] = "rising"
) -> Any:
    """Returns `variables` with each conv bias set so the model's conv inputs follow `profile`.

    Example usage::

      >>> import jax, jaxcps.demo.models as jm
      >>> key = jax.random.key(0, impl="rbg")  # XLA:CPU compiles the default PRNG slowly
      >>> model = jm.VGG16(width=0.125)
      >>> x = jax.random.normal(key, (1, 32, 32, 3))
      >>> variables = jm.calibrate_linen(model, model.init(key, x), x)

    Args:
      model: a linen model whose convs are `nn.Conv` with biases, each followed (directly
        or after pooling/adds) by a ReLU.
      variables: its variables.
      x: the sample input the zero fractions are measured on.
      profile: a name from `PROFILES`, or the target zero fraction of each conv's input in
        execution order (default: "rising").

    Returns:
      New variables (the input is not modified).

    Raises:
      ValueError: for an unknown profile.
    """
    deltas = _bias_deltas(lambda x: model.apply(variables, x), x, profile, ())
    params = _copy_dicts(variables["params"])
    for path, delta in deltas.items():
        node = params
        for key in path.split("/"):
            node = node[key]
        node["bias"] = node["bias"] + delta
    return {**variables, "params": params}


def _copy_dicts(tree: Any) -> Any:
    """A copy of nested mappings (plain dicts, also from a FrozenDict), sharing the arrays."""
    if hasattr(tree, "items"):
        return {k: _copy_dicts(v) for k, v in tree.items()}
    return tree


def calibrate_nnx(
    model: nnx.Module, x: jax.Array, profile: str | Sequence[float] = "rising"
) -> None:
    """Sets, in place, each `nnx.Conv` bias of `model` so its conv inputs follow `profile`.

    Example usage::

      >>> import jax, jaxcps.demo.models as jm
      >>> from flax import nnx
      >>> key = jax.random.key(0, impl="rbg")  # XLA:CPU compiles the default PRNG slowly
      >>> model = jm.VGG16NNX(width=0.125, rngs=nnx.Rngs(key))
      >>> jm.calibrate_nnx(model, jax.random.normal(key, (1, 32, 32, 3)))

    Args:
      model: an NNX model whose convs are `nnx.Conv` with biases.
      x: the sample input the zero fractions are measured on.
      profile: a name from `PROFILES`, or the target zero fraction of each conv's input in
        execution order (default: "rising").

    Raises:
      ValueError: for an unknown profile.
    """
    deltas = _bias_deltas(model, x, profile, (model,))
    for path, module in nnx_convs(model):
        if path in deltas:
            module.bias[...] = module.bias[...] + deltas[path]
