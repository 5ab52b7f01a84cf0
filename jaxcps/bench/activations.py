"""Seeded ReLU-like activation maps with an exact zero fraction, for benchmarks and tests.

Real post-ReLU feature maps have zeros in spatial clusters (a unit is off over a region of
the image) and some channels that are zero everywhere ("dead" units). `relu_activation`
imitates both: it thresholds a smoothed Gaussian random field, choosing the threshold that
gives exactly the requested number of zeros. With `clustered=False` the field is not
smoothed, so zeros are independent and uniformly placed: the worst case for CPS, whose
runs of neighbouring non-zeros then average little more than one element.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Default standard deviation, in pixels, of the Gaussian that smooths the clustered field.
DEFAULT_CORRELATION_LENGTH = 2.0
#: Added to every non-zero (in field standard deviations), so none is 0 or denormal.
_NONZERO_OFFSET = 0.05


def relu_activation(
    shape: Sequence[int],
    zero_fraction: float,
    *,
    clustered: bool = True,
    dead_channels: float = 0.0,
    correlation_length: float = DEFAULT_CORRELATION_LENGTH,
    seed: int = 0,
) -> np.ndarray:
    """A ReLU-like float32 NHWC activation with exactly round(zero_fraction · size) zeros.

    Example::

      >>> x = relu_activation((1, 28, 28, 64), 0.8, dead_channels=0.1, seed=1)
      >>> x.shape, x.dtype, int((x == 0).sum()) == round(0.8 * x.size)
      ((1, 28, 28, 64), dtype('float32'), True)

    Args:
      shape: (N, H, W, C).
      zero_fraction: fraction of elements that are zero, in [0, 1]. The count of zeros is
        `round(zero_fraction * N*H*W*C)`, exactly.
      clustered: if True (default), zeros form spatial clusters: a Gaussian random field is
        smoothed over H and W (independently per image and channel) and its lowest values
        become zeros. If False, zeros are placed uniformly at random (iid).
      dead_channels: fraction of the C channels that are zero in every image and pixel
        (default: 0.0). `round(dead_channels * C)` channels are chosen at random; their zeros
        count toward `zero_fraction`, so it must be at least the dead channels' share.
      correlation_length: standard deviation in pixels of the smoothing Gaussian when
        `clustered` (default: 2.0). Larger values give larger zero regions.
      seed: seed of the NumPy random generator; equal arguments give equal arrays.

    Returns:
      A float32 array of `shape`: zeros where the field is lowest, elsewhere the positive
      excess of the field over the threshold (plus a small offset, so no non-zero rounds to
      0), in units of the field's standard deviation.

    Raises:
      ValueError: if `shape` is not 4-D with positive sizes, a fraction is outside [0, 1],
        `correlation_length` is not positive, or the dead channels alone exceed
        `zero_fraction`.
    """
    n, h, w, c = _check_shape(shape)
    _check_fraction("zero_fraction", zero_fraction)
    _check_fraction("dead_channels", dead_channels)
    if clustered and not correlation_length > 0:
        raise ValueError(f"correlation_length must be > 0, got {correlation_length}")
    rng = np.random.default_rng(seed)
    size = n * h * w * c
    zeros = round(zero_fraction * size)
    dead = rng.permutation(c)[: round(dead_channels * c)]
    dead_zeros = dead.size * n * h * w
    if dead_zeros > zeros:
        raise ValueError(
            f"dead_channels={dead_channels} makes {dead.size} of {c} channels all-zero "
            f"({dead_zeros} zeros), more than zero_fraction={zero_fraction} allows ({zeros})"
        )
    live = np.setdiff1d(np.arange(c), dead)
    field = rng.standard_normal((n, h, w, live.size))
    if clustered:
        field = _smooth(field, correlation_length)
    out = np.zeros((n, h, w, c), dtype=np.float32)
    out[..., live] = _threshold(field, zeros - dead_zeros)
    return out


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    dims = tuple(int(d) for d in shape)
    if len(dims) != 4 or min(dims) < 1:
        raise ValueError(f"shape must be 4-D (N, H, W, C) with positive sizes, got {shape!r}")
    return dims  # type: ignore[return-value]


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over axes 1 and 2 (periodic, by FFT), rescaled to unit variance."""
    h, w = field.shape[1:3]
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    gain = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))[None, :, :, None]
    smooth = np.fft.irfft2(np.fft.rfft2(field, axes=(1, 2)) * gain, s=(h, w), axes=(1, 2))
    std = smooth.std()
    return smooth / std if std > 0 else smooth


def _threshold(field: np.ndarray, zeros: int) -> np.ndarray:
    """ReLU of `field` at the threshold that zeroes exactly its `zeros` lowest elements."""
    flat = field.ravel()
    out = np.zeros(flat.size, dtype=np.float32)
    if zeros < flat.size:
        keep = np.argpartition(flat, zeros)[zeros:]
        out[keep] = flat[keep] - flat[keep].min() + _NONZERO_OFFSET
    return out.reshape(field.shape)
