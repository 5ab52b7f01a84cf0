"""sparse_direct with weights packed per call against weights prepared once, and the dense engines.

One interleaved run per layer (2 threads, median of 11): XLA, sparse_direct with the weights as
a jit argument (packed on every call), sparse_direct with the weights closed over (prepared
once when traced), and ONNX Runtime and OpenVINO (weights prepared at session creation); every
output checked against XLA. Prints each time and the two speed-ups over the better engine.

    pip install ".[bench,peers]"
    python benchmarks/prepared_weights.py --batch 1 8
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxcps
from jaxcps.bench import peers
from jaxcps.bench.activations import relu_activation
from jaxcps.timing import medians, time_interleaved

# (map size, channels in, channels out, stride): ResNet-50's four 3x3 layers, a stride-2 layer
# and VGG-16 conv4_2.
LAYERS = [(7, 512, 512, 1), (14, 256, 256, 1), (28, 128, 128, 1), (56, 64, 64, 1)]
LAYERS += [(28, 256, 256, 2), (28, 512, 512, 1)]
ENGINES = ("onnxruntime", "openvino")
DN = ("NHWC", "HWIO", "NHWC")


def time_layer(n: int, size: int, c: int, o: int, stride: int, zeros: float) -> dict[str, float]:
    """Milliseconds per contender for one layer, from one interleaved run."""
    x = relu_activation((n, size, size, c), zeros, seed=1)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((3, 3, c, o)) * np.sqrt(2 / (9 * c))).astype(np.float32)
    xd, wd = jnp.asarray(x), jnp.asarray(w)

    def conv(x: jax.Array, w: jax.Array, algorithm: str) -> jax.Array:
        return jaxcps.conv_general_dilated(
            x, w, (stride, stride), "SAME", dimension_numbers=DN, algorithm=algorithm
        )

    xla = jax.jit(lambda x, w: conv(x, w, "xla"))
    per_call = jax.jit(lambda x, w: conv(x, w, "sparse_direct"))
    prepared = jax.jit(lambda x: conv(x, wd, "sparse_direct"))
    contenders = {
        "xla": lambda: xla(xd, wd),
        "per call": lambda: per_call(xd, wd),
        "prepared": lambda: prepared(xd),
    }
    expected = np.asarray(xla(xd, wd))
    outputs = {"per call": per_call(xd, wd), "prepared": prepared(xd)}
    for engine in ENGINES:
        dense = peers.make_dense_conv(
            engine, w, input_shape_nhwc=x.shape, window_strides=(stride, stride), threads=2
        )
        native = dense.prepare(x)
        contenders[engine] = lambda dense=dense, native=native: dense.run(native)
        outputs[engine] = dense(x)
    for name, y in outputs.items():
        error = float(np.max(np.abs(np.asarray(y) - expected)))
        assert error <= 1e-4 * float(np.max(np.abs(expected))), f"{name}: max abs error {error}"
    for call in contenders.values():
        jax.block_until_ready(call())
    return {k: v * 1e3 for k, v in medians(time_interleaved(contenders, repeats=11)).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--zeros", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    args = parser.parse_args()
    print("layer | zeros | ms: xla, per call, prepared, onnxruntime, openvino | over best engine")
    for n in args.batch:
        for size, c, o, stride in LAYERS:
            for zeros in args.zeros:
                t = time_layer(n, size, c, o, stride, zeros)
                best = min(t[e] for e in ENGINES)
                times = ", ".join(f"{t[k]:.3f}" for k in ("xla", "per call", "prepared", *ENGINES))
                print(
                    f"{n}x{size}x{size}x{c}->{o} s{stride} | {zeros:.0%} | {times} | "
                    f"per call {best / t['per call']:.2f}x, prepared {best / t['prepared']:.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
