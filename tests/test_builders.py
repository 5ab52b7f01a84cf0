"""The builders of every instruction set agree with each other and with lax.

The AVX-512 CPS builder reads runs off 64-column bitmasks, the CPO builder compresses 16
channels at a time (AVX2: 8, then 4) in chunks of up to 256 channels, and the sparse-direct
masks cover 64 channels, 16 at a time, so widths and channel counts around those sizes, and
runs that cross a 64-column word, are where a per-ISA builder could go wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COMPRESSING, SPARSE, assert_close, lax_conv, use_isa

import jaxcps
from jaxcps import _targets

NATIVE_DN = ("NHWC", "HWIO", "NHWC")


def _row_patterns(width: int, channels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = rng.uniform(0.5, 1.5, (2, 3, width, channels)).astype(np.float32)
    long_runs = ((np.arange(width) // 37) % 2 == 0)[None, None, :, None]
    alternating = (np.arange(width) % 2 == 0)[None, None, :, None]
    return {
        "long runs across 64-column words": x * long_runs,
        "isolated non-zeros": x * alternating,
        "dense": x,
        "random half": np.where(rng.random(x.shape) < 0.5, 0, x).astype(np.float32),
    }


@pytest.mark.parametrize("width", [1, 15, 17, 63, 64, 65, 128, 129, 200])
@pytest.mark.parametrize("channels", [3, 12, 16, 17, 65, 300])
def test_builders_agree_across_isas(
    width: int, channels: int, rng: np.random.Generator, restore_isa: None
) -> None:
    w = rng.standard_normal((3, 3, channels, 5)).astype(np.float32)
    for name, x in _row_patterns(width, channels, rng).items():
        expected = lax_conv(x, w, (1, 1), "SAME", dimension_numbers=NATIVE_DN)
        sizes = {}
        for isa in _targets._ffi.supported_isas():
            use_isa(isa)
            for algorithm in SPARSE:
                if algorithm in COMPRESSING:
                    sizes[isa, algorithm] = _targets._ffi.compressed_bytes(
                        algorithm, x, groups=1, kernel_cols=3
                    )
                got = jaxcps.conv_general_dilated(
                    x, w, (1, 1), "SAME", dimension_numbers=NATIVE_DN, algorithm=algorithm
                )
                assert_close(got, expected, f"{algorithm}/{isa}, {name}, width {width}")
        for algorithm in COMPRESSING:
            per_isa = {isa: b for (isa, a), b in sizes.items() if a == algorithm}
            assert len(set(per_isa.values())) == 1, (algorithm, name, per_isa)


@pytest.mark.parametrize("channels", [8, 17, 65])
def test_builders_count_nan_and_signed_zeros_alike_across_isas(
    channels: int, rng: np.random.Generator, restore_isa: None
) -> None:
    """NaN and ±Inf count as non-zeros and -0.0 as a zero under every ISA's builders, as in the
    portable one (`v != 0.0f`): the vector paths compare 8 or 16 channels at a time."""
    x = rng.uniform(0.5, 1.5, (1, 2, 9, channels)).astype(np.float32)
    x[rng.random(x.shape) < 0.4] = 0.0
    x[rng.random(x.shape) < 0.1] = -0.0
    for value in (np.nan, np.inf, -np.inf):
        x[rng.random(x.shape) < 0.05] = value
    sizes = {}
    for isa in _targets._ffi.supported_isas():
        use_isa(isa)
        sizes[isa] = {
            a: _targets._ffi.compressed_bytes(a, x, groups=1, kernel_cols=3) for a in COMPRESSING
        }
    assert len({tuple(s.items()) for s in sizes.values()}) == 1, sizes


@pytest.mark.parametrize(
    ("channels", "groups"), [(5, 1), (17, 1), (64, 1), (65, 1), (300, 1), (34, 2), (130, 2)]
)
def test_channels_live_at_one_pixel_each_across_isas(
    channels: int, groups: int, rng: np.random.Generator, restore_isa: None
) -> None:
    """CPO packs only the weight rows of channels its builder saw non-zero: with every channel
    non-zero at one pixel of its own (and every fifth at none), a channel wrongly left out
    would multiply stale or unwritten rows. Two 4x4 images and 8 outputs: the weights outweigh
    the activation, so the builders mark single channels. Fresh weights per call, so rows left
    from an earlier call cannot pass for the right ones."""
    x = np.zeros((2, 4, 4, channels), np.float32)
    for c in range(channels):
        if c % 5 != 4:
            x[c % 2, (c // 2) % 4, (c * 7) % 4, c] = 1.0 + c
    layout = {"dimension_numbers": NATIVE_DN, "feature_group_count": groups}
    for isa in _targets._ffi.supported_isas():
        use_isa(isa)
        w = rng.standard_normal((3, 3, channels // groups, 8)).astype(np.float32)
        expected = lax_conv(x, w, (1, 1), "SAME", **layout)
        got = jaxcps.conv_general_dilated(x, w, (1, 1), "SAME", algorithm="cpo", **layout)
        assert_close(got, expected, f"cpo/{isa}, {channels} channels, {groups} groups")
