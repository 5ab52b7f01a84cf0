"""Convolve one sparse (post-ReLU-like) activation with every algorithm.

Prints, for a VGG-16 conv4_2-sized layer at 90% zeros, each algorithm's median time next to
XLA's own convolution, its compression ratio against im2col, and its error against XLA.

    python examples/quickstart.py [--zeros 0.9] [--size 28] [--channels 512]
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxcps
from jaxcps.bench.activations import relu_activation
from jaxcps.footprint import FOOTPRINT_ALGORITHMS
from jaxcps.timing import medians, time_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zeros", type=float, default=0.9, help="zero fraction (default: 0.9)")
    parser.add_argument("--size", type=int, default=28, help="height = width (default: 28)")
    parser.add_argument(
        "--channels", type=int, default=512, help="in = out channels (default: 512)"
    )
    args = parser.parse_args()

    x = relu_activation((1, args.size, args.size, args.channels), args.zeros, seed=0)
    w = np.random.default_rng(1).standard_normal((3, 3, args.channels, args.channels))
    w = (w / np.sqrt(9 * args.channels)).astype(np.float32)
    x_dev, w_dev = jnp.asarray(x), jnp.asarray(w)

    convs = {
        algorithm: jax.jit(
            lambda x, w, a=algorithm: jaxcps.conv_general_dilated(
                x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), algorithm=a
            )
        )
        for algorithm in jaxcps.ALGORITHMS
        if algorithm != "auto"  # without a plan, "auto" is "xla"
    }
    times = medians(
        time_interleaved({name: (lambda f=f: f(x_dev, w_dev)) for name, f in convs.items()})
    )
    expected = convs["xla"](x_dev, w_dev)
    im2col_bytes = jaxcps.footprint(x, w.shape, (1, 1), "SAME", "im2col")

    print(f"layer {x.shape} * {w.shape}, {args.zeros:.0%} zeros, active ISA {jaxcps.active_isa()}")
    print(
        f"{'algorithm':>9}  {'median ms':>9}  {'vs XLA':>7}  {'CR vs im2col':>12}  {'rel. error':>10}"
    )
    for name, f in convs.items():
        y = f(x_dev, w_dev)
        error = float(jnp.max(jnp.abs(y - expected)) / jnp.max(jnp.abs(expected)))
        if name in FOOTPRINT_ALGORITHMS:
            ratio = im2col_bytes / jaxcps.footprint(x, w.shape, (1, 1), "SAME", name)
            cr = f"{ratio:11.1f}x"
        else:
            cr = f"{'-':>12}"
        print(
            f"{name:>9}  {times[name] * 1e3:9.2f}  {times['xla'] / times[name]:6.2f}x  {cr}  {error:10.1e}"
        )


if __name__ == "__main__":
    main()
