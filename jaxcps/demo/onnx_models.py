"""The demo's CNNs as ONNX graphs, built layer by layer from their linen parameters.

`to_onnx("resnet50", variables["params"], (1, 112, 112, 3))` mirrors the linen model of
`jaxcps.demo.models` node by node: Conv with bias (kernel sizes read from the parameters,
strides and padding as the model uses them), Relu, MaxPool, Add for residuals, and
GlobalAveragePool, Flatten and Gemm for the head. The graph takes NCHW input (the layout ONNX
convolutions are defined on) and returns the logits. Only onnx and numpy are needed here;
`jaxcps.bench.peers.onnxruntime_session` runs the model as the benchmarks run ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from jax import lax

from jaxcps.bench import peers
from jaxcps.demo.models import RESNET18_STAGES, RESNET50_STAGES, VGG16_STAGES

Params = Mapping[str, Any]


class _Graph:
    """Accumulates nodes and weights; values are named by the graph and shaped NCHW."""

    def __init__(self, params: Params, input_shape_nhwc: Sequence[int]):
        self.onnx = peers._import("onnx")
        self.params = params
        self.nodes: list[Any] = []
        self.weights: list[Any] = []
        self.shapes: dict[str, tuple[int, int]] = {"x": tuple(input_shape_nhwc[1:3])}

    def has(self, path: str) -> bool:
        """Whether the parameters hold the module at `path` ("stage2_block1/proj")."""
        node = self.params
        for key in path.split("/"):
            if key not in node:
                return False
            node = node[key]
        return True

    def _param(self, path: str) -> Params:
        node = self.params
        for key in path.split("/"):
            node = node[key]
        return node

    def _node(self, op: str, inputs: list[str], hw: tuple[int, int], **attributes: Any) -> str:
        name = f"{op.lower()}{len(self.nodes)}"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [name], **attributes))
        self.shapes[name] = hw
        return name

    def _weight(self, name: str, value: Any) -> str:
        self.weights.append(
            self.onnx.numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name)
        )
        return name

    def _window(
        self, x: str, window: tuple[int, int], stride: int, padding: str
    ) -> tuple[list[int], tuple[int, int]]:
        """ONNX pads (begins, then ends) and the output size, as lax pads this window."""
        pads = lax.padtype_to_pads(self.shapes[x], window, (stride, stride), padding)
        out = tuple(
            (size + lo + hi - k) // stride + 1
            for size, (lo, hi), k in zip(self.shapes[x], pads, window, strict=True)
        )
        return [lo for lo, _ in pads] + [hi for _, hi in pads], out

    def conv(self, x: str, path: str, stride: int = 1, padding: str = "SAME") -> str:
        """The linen `nn.Conv` at `path`: HWIO kernel and bias, as an ONNX Conv."""
        module = self._param(path)
        kernel = np.asarray(module["kernel"])
        window = (kernel.shape[0], kernel.shape[1])
        pads, out = self._window(x, window, stride, padding)
        w = self._weight(f"{path}/kernel", kernel.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        b = self._weight(f"{path}/bias", module["bias"])
        return self._node(
            "Conv", [x, w, b], out, kernel_shape=list(window), strides=[stride, stride], pads=pads
        )

    def max_pool(self, x: str, window: int, stride: int, padding: str) -> str:
        """`nn.max_pool`; ONNX pads with -inf as Flax does."""
        pads, out = self._window(x, (window, window), stride, padding)
        return self._node(
            "MaxPool", [x], out, kernel_shape=[window, window], strides=[stride, stride], pads=pads
        )

    def relu(self, x: str) -> str:
        return self._node("Relu", [x], self.shapes[x])

    def add(self, a: str, b: str) -> str:
        return self._node("Add", [a, b], self.shapes[a])

    def head(self, x: str, path: str) -> str:
        """Mean over H and W, then the linen `nn.Dense` at `path`."""
        pooled = self._node(
            "Flatten", [self._node("GlobalAveragePool", [x], (1, 1))], (1, 1), axis=1
        )
        module = self._param(path)
        w = self._weight(f"{path}/kernel", module["kernel"])  # (in, out): no transpose
        b = self._weight(f"{path}/bias", module["bias"])
        return self._node("Gemm", [pooled, w, b], (1, 1))


def _vgg16(g: _Graph, x: str) -> str:
    for s, (_, convs) in enumerate(VGG16_STAGES, 1):
        for c in range(1, convs + 1):
            x = g.relu(g.conv(x, f"stage{s}_conv{c}"))
        x = g.max_pool(x, 2, 2, "VALID")
    return g.head(x, "head")


def _resnet(
    block: Callable[[_Graph, str, str, int], str], stages: Sequence[tuple[int, ...]]
) -> Callable[[_Graph, str], str]:
    """A ResNet of `block`s: 7x7/2 stem, 3x3/2 max-pool, the stages, the head."""

    def build(g: _Graph, x: str) -> str:
        x = g.max_pool(g.relu(g.conv(x, "stem", 2)), 3, 2, "SAME")
        for s, (_, blocks, stride) in enumerate(stages, 1):
            for b in range(1, blocks + 1):
                x = block(g, x, f"stage{s}_block{b}", stride if b == 1 else 1)
        return g.head(x, "head")

    return build


def _shortcut(g: _Graph, x: str, path: str, stride: int) -> str:
    return g.conv(x, f"{path}/proj", stride) if g.has(f"{path}/proj") else x


def _basic_block(g: _Graph, x: str, path: str, stride: int) -> str:
    h = g.relu(g.conv(x, f"{path}/conv1", stride))
    return g.relu(g.add(g.conv(h, f"{path}/conv2"), _shortcut(g, x, path, stride)))


def _bottleneck(g: _Graph, x: str, path: str, stride: int) -> str:
    h = g.relu(g.conv(x, f"{path}/conv1"))
    h = g.relu(g.conv(h, f"{path}/conv2", stride))
    return g.relu(g.add(g.conv(h, f"{path}/conv3"), _shortcut(g, x, path, stride)))


#: Model name (a key of `jaxcps.demo.models.MODELS`) -> its graph builder.
BUILDERS: dict[str, Callable[[_Graph, str], str]] = {
    "vgg16": _vgg16,
    "resnet18": _resnet(_basic_block, RESNET18_STAGES),
    "resnet50": _resnet(_bottleneck, RESNET50_STAGES),
}


def to_onnx(model: str, params: Params, input_shape_nhwc: Sequence[int]) -> Any:
    """The linen model `model` with parameters `params` as an `onnx.ModelProto`.

    Example usage (needs onnx; `tests/test_peers.py` runs the same against Flax)::

      model = jaxcps.demo.models.ResNet18(width=0.125)
      params = model.init(key, x)["params"]          # x: (1, 32, 32, 3)
      proto = to_onnx("resnet18", params, x.shape)   # input "x": (1, 3, 32, 32)
      session = jaxcps.bench.peers.onnxruntime_session(proto, threads=2)
      logits = session.run(None, {"x": x_nchw})[0]    # (1, 10), as model.apply's

    Args:
      model: a key of `BUILDERS` ("vgg16", "resnet18", "resnet50").
      params: the model's `variables["params"]`.
      input_shape_nhwc: the input's shape (N, H, W, C); the graph takes it as NCHW.

    Returns:
      A checked ONNX model with input "x" (NCHW float32) and output "logits".

    Raises:
      ValueError: for an unknown model.
      ImportError: if onnx is not installed.
    """
    if model not in BUILDERS:
        raise ValueError(f"model must be one of {tuple(BUILDERS)}, got {model!r}")
    g = _Graph(params, input_shape_nhwc)
    helper, float32 = g.onnx.helper, g.onnx.TensorProto.FLOAT
    logits = BUILDERS[model](g, "x")
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    n, h, w, c = input_shape_nhwc
    graph = helper.make_graph(
        g.nodes,
        model,
        [helper.make_tensor_value_info("x", float32, [n, c, h, w])],
        [helper.make_tensor_value_info("logits", float32, [n, "classes"])],
        g.weights,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", peers.ONNX_OPSET)])
    g.onnx.checker.check_model(proto)
    return proto
