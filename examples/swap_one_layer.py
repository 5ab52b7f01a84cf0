"""Swap the convolution of one layer of a linen model, two ways.

1. Edit the model: use `jaxcps.flax.linen.Conv` (same parameters as `nn.Conv`, plus
   `algorithm`) for that layer; existing checkpoints still load.
2. Don't edit it: route that layer by its module path with `jaxcps.flax.route`.

Run: python examples/swap_one_layer.py
"""

import functools

import flax.linen as nn
import jax
import numpy as np

import jaxcps.flax
from jaxcps.flax import linen as jlinen


def key(seed):
    # "rbg" keys: XLA on CPU compiles the default (threefry) generator slowly.
    return jax.random.key(seed, impl="rbg")


class Net(nn.Module):
    conv: type = nn.Conv  # the class used for the last layer

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        return self.conv(32, (3, 3), name="last")(x)


x = jax.random.normal(key(0), (1, 32, 32, 3))
variables = Net().init(key(1), x)  # a plain Flax model and its checkpoint
reference = Net().apply(variables, x)

# 1. The drop-in module, with the plain model's parameters.
edited = Net(conv=functools.partial(jlinen.Conv, algorithm="cpo"))
y1 = jax.jit(edited.apply)(variables, x)

# 2. The unedited model, routed by path.
with jaxcps.flax.route({"last": "cpo"}):
    y2 = jax.jit(Net().apply)(variables, x)

for y in (y1, y2):
    np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4)
print("layer 'last' ran on CPO both ways; outputs match nn.Conv:", y1.shape)
