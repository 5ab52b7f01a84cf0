"""Select the fastest algorithm per convolution of an Equinox model, run it, train through it.

Equinox names every convolution's scope "eqx.nn.Conv" (inside "eqx.nn.Sequential"), so keys
are made unique by occurrence: "eqx.nn.Sequential/eqx.nn.Conv", "...#1", "...#2".
Models holding functions (eqx.nn.Lambda) pass as they are: non-array leaves are static.

Run: python examples/route_equinox.py
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import jaxcps

# "rbg" keys: XLA on CPU compiles the default (threefry) generator slowly.
k1, k2, k3, k4 = jax.random.split(jax.random.key(0, impl="rbg"), 4)
model = eqx.nn.Sequential(
    [
        eqx.nn.Conv2d(3, 32, 3, padding=1, key=k1),
        eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Conv2d(32, 32, 3, padding=1, key=k2),
        eqx.nn.Lambda(jax.nn.relu),
        eqx.nn.Conv2d(32, 32, 3, stride=2, padding=1, key=k3),
    ]
)
x = jax.random.normal(k4, (4, 3, 32, 32))  # channels first, as Equinox convolutions take


def forward(model, x):
    return jax.vmap(model)(x)


print(jaxcps.conv_keys(forward, model, x))
plan = jaxcps.select(forward, model, x, candidates=("xla", "cpo", "cps"), repeats=3)
print(plan)

fast = jaxcps.routed(forward, plan)
y = eqx.filter_jit(fast)(model, x)
np.testing.assert_allclose(y, forward(model, x), rtol=1e-4, atol=1e-5)

# Gradients flow through the routed model (derivatives run on XLA's dense convolution).
loss = eqx.filter_jit(eqx.filter_value_and_grad(lambda m, x: jnp.mean(fast(m, x) ** 2)))
value, grads = loss(model, x)
print(
    f"routed output matches; loss {float(value):.4f}, gradient leaves:", len(jax.tree.leaves(grads))
)
