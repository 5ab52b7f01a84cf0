"""Benchmark tooling: `jaxcps bench` times every algorithm against XLA (and, with `--peers`,
other dense engines) on suites of conv layers.

- `cli`: the command (`jaxcps bench`, also `python -m jaxcps.bench`).
- `harness`: one case's inputs, contenders, timing and build share.
- `peers`: the dense engines of `--peers` (ONNX Runtime, OpenVINO, oneDNN via PyTorch; the
  `peers` extra).
- `machine`: what the numbers were measured on, and the sgemm and nominal peaks.
- `layers`: the conv layers of VGG-16, ResNet-50 and Inception-v3, and the suites.
- `activations`: seeded ReLU-like activations with an exact zero fraction.
- `report`: derived figures, JSON and CSV.
- `tables`: the terminal table and the markdown.
- `targets`: the targets against the best dense engine, and their evaluation.
- `plots`: the PNG plots (matplotlib, the `bench` extra).

`import jaxcps` does not import this package.
"""
