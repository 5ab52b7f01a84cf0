"""jaxcps: sparse-activation convolution (CPO, CPS, sparse direct) for JAX on CPU.

`conv_general_dilated` is a drop-in for `jax.lax.conv_general_dilated` that can run the
convolution on C++ kernels (im2col, MEC, CPO, CPS, sparse_direct) registered as XLA FFI custom calls.
`routed(fn, policy)` runs the convolutions of any JAX program through it, by layer key, and
`select(fn, *args)` measures which algorithm is fastest for each of them; `export_checks()`
lets `jax.export` serialize programs that use jaxcps. The Flax integration is `jaxcps.flax`;
the benchmark harness `jaxcps.bench`; the demo `jaxcps.demo`.
"""

from jaxcps._targets import active_isa, supported_isas
from jaxcps.algorithms import ALGORITHMS
from jaxcps.conv import conv_general_dilated
from jaxcps.export import export_checks
from jaxcps.footprint import footprint
from jaxcps.plan import Plan
from jaxcps.routing import conv_keys, routed
from jaxcps.selection import select

__all__ = [
    "ALGORITHMS",
    "Plan",
    "active_isa",
    "conv_general_dilated",
    "conv_keys",
    "export_checks",
    "footprint",
    "routed",
    "select",
    "supported_isas",
]
__version__ = "0.1.0"
