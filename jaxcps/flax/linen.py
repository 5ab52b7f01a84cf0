"""A drop-in for `flax.linen.Conv` that runs `jaxcps.conv_general_dilated`."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from jaxcps.algorithms import check_algorithm
from jaxcps.conv import conv_general_dilated
from jaxcps.flax._hooks import linen_path


class Conv(nn.Conv):
    """Convolution Module wrapping `jaxcps.conv_general_dilated`.

    `flax.linen.Conv` with one more attribute, `algorithm`. Parameters (`kernel` in HWIO,
    `bias`), their shapes, initializers, padding modes, strides, dilations and groups are
    Flax's own, so checkpoints of `nn.Conv` models load unchanged; the auto-generated
    names are also the same ("Conv_0", ...).

    Example usage::

      >>> import jax, jax.numpy as jnp
      >>> from jaxcps.flax import linen as jlinen
      >>> layer = jlinen.Conv(features=4, kernel_size=(3, 3), algorithm="cpo")
      >>> x = jnp.ones((1, 8, 8, 3))
      >>> variables = layer.init(jax.random.key(0), x)
      >>> jax.tree.map(jnp.shape, variables)
      {'params': {'bias': (4,), 'kernel': (3, 3, 3, 4)}}
      >>> layer.apply(variables, x).shape
      (1, 8, 8, 4)

    Attributes:
      algorithm: one of `jaxcps.ALGORITHMS` (default: "auto"). With "auto" the layer runs
        what the active plan (`jaxcps.flax.route`) names for its module path, XLA otherwise.
      All other attributes: as `flax.linen.Conv`. If `conv_general_dilated` is set
      explicitly, it is used instead and `algorithm` is ignored.
    """

    algorithm: str = "auto"

    def __post_init__(self) -> None:
        check_algorithm(self.algorithm)
        super().__post_init__()

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Applies the convolution; see `flax.linen.Conv.__call__` (channels-last inputs).

        Args:
          inputs: (batch..., spatial..., features) array.

        Returns:
          The convolved data.
        """
        if self.conv_general_dilated is not None:
            return super().__call__(inputs)
        fn = functools.partial(
            conv_general_dilated, algorithm=self.algorithm, name=linen_path(self)
        )
        # The field is read when the parent's __call__ runs; set it for that call only.
        object.__setattr__(self, "conv_general_dilated", fn)
        try:
            return super().__call__(inputs)
        finally:
            object.__setattr__(self, "conv_general_dilated", None)
