"""Benchmark tooling: `jaxcps bench` times every algorithm against XLA on suites of conv layers.

- `cli`: the command (`jaxcps bench`, also `python -m jaxcps.bench`).
- `harness`: one case's inputs, contenders, timing and build share.
- `machine`: what the numbers were measured on, and the achievable and nominal peaks.
- `layers`: the conv layers of VGG-16, ResNet-50 and Inception-v3, and the suites.
- `activations`: seeded ReLU-like activations with an exact zero fraction.
- `report`: derived figures, the table, JSON, CSV and markdown.
- `plots`: the PNG plots (matplotlib, the `bench` extra).

`import jaxcps` does not import this package.
"""
