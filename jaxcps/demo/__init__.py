"""The demo: `jaxcps demo` and the small CNNs it and the examples run.

- `cli`: the command (`jaxcps demo`): calibrate a CNN, select per layer, time end to end.
- `models`: VGG-16-, ResNet-18- and ResNet-50-style CNNs (linen and NNX) and bias calibration
  to a sparsity profile (needs Flax).
- `onnx_models`: those CNNs as ONNX graphs built from their linen parameters, for the
  comparison with ONNX Runtime (needs onnx).
- `plots`: the demo's PNG plots (needs matplotlib).

`import jaxcps` does not import this package; importing it imports neither Flax nor
matplotlib (the submodules that need them do).
"""
