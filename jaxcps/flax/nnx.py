"""A drop-in for `flax.nnx.Conv` that runs `jaxcps.conv_general_dilated`."""

from __future__ import annotations

import functools
from typing import Any

from flax import nnx

from jaxcps.algorithms import check_algorithm
from jaxcps.conv import conv_general_dilated


class Conv(nnx.Conv):
    """Convolution Module wrapping `jaxcps.conv_general_dilated`.

    `flax.nnx.Conv` with one more argument, `algorithm`. Parameters (`kernel` in HWIO,
    `bias`), their shapes and initializers are Flax's, so `nnx.state` of an `nnx.Conv`
    loads into it with `nnx.update`.

    Example usage::

      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxcps.flax import nnx as jnnx
      >>> layer = jnnx.Conv(3, 4, kernel_size=(3, 3), algorithm="cpo", rngs=nnx.Rngs(0))
      >>> layer.kernel.shape, layer.bias.shape
      ((3, 3, 3, 4), (4,))
      >>> layer(jnp.ones((1, 8, 8, 3))).shape
      (1, 8, 8, 4)

    Args:
      *args: as `flax.nnx.Conv` (in_features, out_features, kernel_size, strides).
      algorithm: one of `jaxcps.ALGORITHMS` (default: "auto"). With "auto" the layer runs
        what `jaxcps.flax.route(policy, model)` gives for its path, or the active plan's
        entry for `name`, and XLA otherwise.
      name: the key looked up in the active plan under "auto" (default: None).
      **kwargs: as `flax.nnx.Conv` (padding, dilations, groups, initializers, rngs, ...),
        except `conv_general_dilated`, which this class sets.

    Raises:
      ValueError: for an algorithm not in `jaxcps.ALGORITHMS`.
      TypeError: if `conv_general_dilated` is passed.
    """

    def __init__(
        self, *args: Any, algorithm: str = "auto", name: str | None = None, **kwargs: Any
    ) -> None:
        check_algorithm(algorithm)
        if "conv_general_dilated" in kwargs:
            raise TypeError("jaxcps.flax.nnx.Conv sets conv_general_dilated itself")
        super().__init__(
            *args,
            conv_general_dilated=functools.partial(
                conv_general_dilated, algorithm=algorithm, name=name
            ),
            **kwargs,
        )
        self.algorithm = algorithm
