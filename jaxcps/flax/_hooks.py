"""Temporarily giving Flax `Conv` modules another convolution function, keyed by module path.

One mechanism behind both routing (`route.py`) and activation capture (`select.py`):
- linen: an `nn.intercept_methods` interceptor sets the (deprecated, still honoured) field
  `conv_general_dilated` of each intercepted `nn.Conv` for the duration of its `__call__`.
  Interceptors are thread-local in Flax, so this affects only the entering thread.
- NNX: the `conv_general_dilated` attribute of every `nnx.Conv` in the given models is set on
  entry and restored on exit (also on exceptions). The attribute lives on the model object,
  so every thread that uses that object sees it while the context is open.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
from flax import nnx

#: (module path, module) -> the conv function to use, or None to leave the module alone.
ConvFor = Callable[[str, Any], Callable[..., Any] | None]


def linen_path(module: nn.Module) -> str:
    """The path Flax shows for a bound linen module, e.g. "features/Conv_3"."""
    return "/".join(str(k) for k in module.path)


def nnx_convs(model: nnx.Module) -> list[tuple[str, nnx.Conv]]:
    """(attribute path, module) of every `nnx.Conv` in `model`, e.g. ("blocks/0/conv1", m)."""
    return [
        ("/".join(str(k) for k in path), m)
        for path, m in nnx.iter_modules(model)
        if isinstance(m, nnx.Conv)
    ]


def _interceptor(conv_for: ConvFor) -> Callable[..., Any]:
    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if not isinstance(module, nn.Conv) or context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        fn = conv_for(linen_path(module), module)
        if fn is None:
            return next_fun(*args, **kwargs)
        previous = module.conv_general_dilated
        # Linen modules are frozen dataclasses; the field is read at call time only.
        object.__setattr__(module, "conv_general_dilated", fn)
        try:
            return next_fun(*args, **kwargs)
        finally:
            object.__setattr__(module, "conv_general_dilated", previous)

    return intercept


@contextlib.contextmanager
def swap_convs(conv_for: ConvFor, models: Sequence[nnx.Module] = ()) -> Iterator[None]:
    """Under this context, linen and NNX `Conv` modules use `conv_for(path, module)`.

    NNX modules cannot be modified inside a trace, so enter this context outside `jax.jit`
    (the swapped functions then act on whatever is traced inside it).

    Args:
      conv_for: gives the conv function for a module path and module, or None to keep its own.
      models: NNX modules whose `nnx.Conv` submodules are swapped (default: ()).
    """
    patched: list[tuple[nnx.Conv, Any]] = []
    try:
        for model in models:
            for path, module in nnx_convs(model):
                fn = conv_for(path, module)
                if fn is not None:
                    previous = module.conv_general_dilated
                    module.conv_general_dilated = fn
                    patched.append((module, previous))
        with nn.intercept_methods(_interceptor(conv_for)):
            yield
    finally:
        for module, previous in reversed(patched):
            module.conv_general_dilated = previous
