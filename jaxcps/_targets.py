"""Loads the compiled module and registers its convolution kernels (ffi/) with XLA, once.

The one rule for target names lives here: `jaxcps_<algorithm>_f32`, and `jaxcps_prepared_f32`
for kernels given prepared weights (`jaxcps.prepared`). The registry of FFI
targets is global to the process, hence the prefix. Also here: which instruction set the
sparse kernels run on, as the compiled module reports it.
"""

from jaxcps._blas import load_openblas

load_openblas()

import jax

try:
    from jaxcps import _ffi
except ImportError as e:  # pragma: no cover - depends on how jaxcps was installed
    raise ImportError(
        "jaxcps's compiled extension (jaxcps/_ffi) is missing. If you are running Python in the "
        "jaxcps source folder, its jaxcps/ folder shadows the installed package: run from another "
        "folder, or install in place with `pip install --no-build-isolation -e .`. Otherwise "
        "reinstall with `pip install .`."
    ) from e


def target_name(algorithm: str) -> str:
    """Name of the FFI target that runs `algorithm` on float32."""
    return f"jaxcps_{algorithm}_f32"


#: The FFI target that runs any kernel with prepared weights (its name is an attribute).
PREPARED_TARGET = "jaxcps_prepared_f32"

for _name, _capsule in _ffi.registrations().items():
    jax.ffi.register_ffi_target(target_name(_name), _capsule, platform="cpu")
jax.ffi.register_ffi_target(PREPARED_TARGET, _ffi.prepared_registration(), platform="cpu")


def active_isa() -> str:
    """The instruction set the sparse kernels use now, e.g. "scalar", "avx2" or "avx512".

    The best one this CPU supports, unless the environment variable JAXCPS_ISA names another.
    """
    return _ffi.active_isa()


def supported_isas() -> tuple[str, ...]:
    """The instruction sets of the sparse kernels that this CPU supports, portable first."""
    return tuple(_ffi.supported_isas())
