"""jaxcps: sparse-activation convolution (CPO/CPS) for JAX on CPU.

`conv_general_dilated` is a drop-in for `jax.lax.conv_general_dilated` that can run the
convolution on C++ kernels (im2col, MEC, CPO, CPS) registered as XLA FFI custom calls.
The Flax integration is `jaxcps.flax`; the benchmark harness `jaxcps.bench`; the demo
`jaxcps.demo`.
"""

from jaxcps._targets import active_isa, supported_isas
from jaxcps.algorithms import ALGORITHMS
from jaxcps.conv import conv_general_dilated
from jaxcps.footprint import footprint
from jaxcps.plan import Plan

__all__ = [
    "ALGORITHMS",
    "Plan",
    "active_isa",
    "conv_general_dilated",
    "footprint",
    "supported_isas",
]
__version__ = "0.1.0"
