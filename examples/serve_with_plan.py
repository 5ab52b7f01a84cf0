"""Select once, save the plan, and serve later from the saved plan with a jitted function.

Run: python examples/serve_with_plan.py [--image-size 64 --width 0.25 --candidates xla,cpo
                                         --plan plan.json]
"""

import argparse
import os
import tempfile

import jax

import jaxcps
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
parser.add_argument("--plan", default=os.path.join(tempfile.gettempdir(), "jaxcps_plan.json"))
args = parser.parse_args()

model = models.VGG16(width=args.width)
sample = jax.random.uniform(key(0), (1, args.image_size, args.image_size, 3))
variables = models.calibrate_linen(model, model.init(key(1), sample), sample)

# Offline, once: measure and save.
candidates = args.candidates.split(",")
jaxcps.flax.select(
    lambda x: model.apply(variables, x), sample, candidates=candidates, repeats=3
).save(args.plan)

# At serving time: load the plan and compile the serving function under it.
plan = jaxcps.Plan.load(args.plan)


def make_server(plan):
    serve = jax.jit(lambda x: jax.nn.softmax(model.apply(variables, x)))
    with jaxcps.flax.route(plan):
        serve(sample)  # the first call traces and compiles under the plan
    return serve


serve = make_server(plan)
for seed in range(3):  # requests arrive outside the context and keep the plan
    request = jax.random.uniform(key(seed), sample.shape)
    print("request", seed, "-> class", int(serve(request).argmax()))
print(
    f"plan {args.plan}: {sum(a != 'xla' for a in plan.values())} of {len(plan)} layers "
    f"on jaxcps kernels"
)
