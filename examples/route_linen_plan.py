"""Select the fastest algorithm per layer of a linen CNN, then run it by that plan.

Run: python examples/route_linen_plan.py [--image-size 64 --width 0.25 --candidates xla,cpo]
"""

import argparse

import jax
import numpy as np

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

model = models.VGG16(width=args.width)
x = jax.random.uniform(key(0), (1, args.image_size, args.image_size, 3))
variables = models.calibrate_linen(model, model.init(key(1), x), x, "rising")

fn = lambda x: model.apply(variables, x)
plan = jaxcps.flax.select(fn, x, candidates=args.candidates.split(","), repeats=3)
print(plan)

apply = jax.jit(model.apply)
with jaxcps.flax.route(plan):  # trace inside: the compiled function keeps the plan
    y = apply(variables, x)
np.testing.assert_allclose(y, model.apply(variables, x), rtol=1e-3, atol=1e-6)
print("routed output matches XLA:", y.shape)
