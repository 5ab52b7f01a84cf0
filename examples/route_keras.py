"""Select the fastest algorithm per convolution of a Keras 3 model, then run it by that plan.

Keras opens a name scope per model and layer, so a convolution's key is "<model>/<layer>"
("cnn/stem" here; "resnet50/conv4_block1_2_conv" in keras.applications.ResNet50). Keras must
use its JAX backend: KERAS_BACKEND=jax, set before keras is imported.

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

inputs = keras.Input((args.image_size, args.image_size, 3))
h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="stem")(inputs)
h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", name="down")(h)
h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="body")(h)
h = keras.layers.GlobalAveragePooling2D()(h)
model = keras.Model(inputs, keras.layers.Dense(10, name="head")(h), name="cnn")

x = np.random.default_rng(0).uniform(size=(1, args.image_size, args.image_size, 3))
x = x.astype(np.float32)
print("keys:", jaxcps.conv_keys(model, x))

plan = jaxcps.select(model, x, candidates=("xla", "cpo", "cps"), repeats=3)
print(plan)

fast = jax.jit(jaxcps.routed(model, plan))
y = fast(x)
np.testing.assert_allclose(y, jax.jit(lambda x: model(x))(x), rtol=1e-4, atol=1e-6)
print("routed model matches Keras:", y.shape)
