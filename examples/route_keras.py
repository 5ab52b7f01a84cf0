"""Run the convolutions of a Keras 3 model through jaxcps, chosen by layer name.

Keras opens a name scope per model and layer, so each convolution's key is
"<model>/<layer>", e.g. "resnet50/conv4_block1_2_conv". Keras must use its JAX backend
(KERAS_BACKEND=jax, set before keras is imported). No weights are downloaded.

Run: python examples/route_keras.py [--image-size 64]
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import keras
import numpy as np

import jaxcps

parser = argparse.ArgumentParser()
parser.add_argument("--image-size", type=int, default=64)
args = parser.parse_args()

model = keras.applications.ResNet50(
    weights=None, input_shape=(args.image_size, args.image_size, 3), classes=10
)
x = np.random.default_rng(0).uniform(size=(1, args.image_size, args.image_size, 3))
x = x.astype(np.float32)

keys = jaxcps.conv_keys(model, x)
print(f"{len(keys)} convolutions, e.g. {keys[:2]}")

# The last two stages, where ReLU leaves the most zeros, on CPO; the others stay on XLA.
policy = {"resnet50/conv4_*": "cpo", "resnet50/conv5_*": "cpo"}
fast = jax.jit(jaxcps.routed(model, policy))
y = fast(x)
np.testing.assert_allclose(y, jax.jit(lambda x: model(x))(x), rtol=1e-4, atol=1e-6)
print("routed ResNet50 matches Keras:", y.shape)
