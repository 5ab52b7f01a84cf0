"""Loads OpenBLAS from the scipy-openblas32 wheel before the C++ module that links against it.

`jaxcps/_ffi*.so` needs `libscipy_openblas.so`. Loading it here, by the path the wheel
reports, makes the dynamic loader find it wherever pip put the wheel.
"""

import ctypes
import os

import scipy_openblas32


def load_openblas() -> None:
    path = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
