"""Select the fastest algorithm per layer of an NNX CNN, then run it by that plan.

NNX modules have no path of their own, so `route` is given the model whose `nnx.Conv`
modules it routes (restored on exit).

Run: python examples/route_nnx_plan.py [--image-size 64 --width 0.25 --candidates xla,cpo]
"""

import argparse

import jax
import numpy as np
from flax import nnx

import jaxcps.flax
from jaxcps.demo import models


def key(seed):
    # "rbg" keys: XLA on CPU compiles the default (threefry) generator slowly.
    return jax.random.key(seed, impl="rbg")


parser = argparse.ArgumentParser()
parser.add_argument("--image-size", type=int, default=64)
parser.add_argument("--width", type=float, default=0.25)
parser.add_argument(
    "--candidates",
    default=",".join(a for a in jaxcps.ALGORITHMS if a != "auto"),
    help="comma-separated algorithms to time (default: all but auto)",
)
args = parser.parse_args()

model = models.ResNet18NNX(width=args.width, rngs=nnx.Rngs(key(0)))
x = jax.random.uniform(key(1), (1, args.image_size, args.image_size, 3))
models.calibrate_nnx(model, x, "rising")

plan = jaxcps.flax.select(model, x, candidates=args.candidates.split(","), repeats=3)
print(plan)

forward = nnx.jit(lambda m, x: m(x))
with jaxcps.flax.route(plan, model):
    y = forward(model, x)
np.testing.assert_allclose(y, model(x), rtol=1e-3, atol=1e-6)
print("routed output matches XLA:", y.shape)
