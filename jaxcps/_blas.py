"""Loads OpenBLAS from the scipy-openblas32 wheel before the C++ module that links against it.

`jaxcps/_ffi*.so` needs `libscipy_openblas` (.so on Linux, .dylib on macOS). Loading it here,
by the path the wheel reports, makes the dynamic loader find it wherever pip put the wheel.
"""

import ctypes
import os
import sys

import scipy_openblas32

_LIBRARY = "libscipy_openblas.dylib" if sys.platform == "darwin" else "libscipy_openblas.so"


def load_openblas() -> None:
    path = os.path.join(scipy_openblas32.get_lib_dir(), _LIBRARY)
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
