"""NaN and Inf give the results lax gives, position by position.

In the activations, every kernel multiplies the non-finite value like lax does. In the
weights, skipping zeros would differ: lax gives NaN where an activation zero (or a padding
zero) meets a NaN or infinite weight, a skipped product gives nothing. The kernels that skip
zeros therefore run the dense im2col path when any weight is non-finite: CPO and sparse_direct
find such weights while they pack them, for CPS the FFI handler scans the weights first
(ffi/bindings/handlers.cc). These tests hold them to lax's NaN/Inf pattern exactly, and to
lax's values elsewhere; tests/cpp/kernel_parity.cc puts a non-finite weight at every position
of a few layers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import (
    FFI_ALGORITHMS,
    NATIVE_DN,
    SPARSE,
    lax_conv,
    sparse_activation,
    weights,
)

import jaxcps

#: (id, kernel shape, strides, padding, rhs_dilation)
CONFIGS: list[tuple[str, tuple[int, ...], tuple[int, int], Any, tuple[int, int]]] = [
    ("3x3-same", (3, 3, 4, 6), (1, 1), "SAME", (1, 1)),
    ("3x3-stride2-asym", (3, 3, 4, 6), (2, 2), ((2, 0), (1, 2)), (1, 1)),
    ("1x5-dilated-wide", (1, 5, 4, 6), (1, 1), ((0, 0), (3, 3)), (1, 2)),
    ("3x3-negative-pad", (3, 3, 4, 6), (1, 1), ((-1, 1), (0, -2)), (1, 1)),
]
X_SHAPE = (2, 9, 10, 4)


def _conv(
    x: np.ndarray, w: np.ndarray, config: tuple, algorithm: str, groups: int = 1
) -> np.ndarray:
    _, _, strides, padding, dilation = config
    args = dict(rhs_dilation=dilation, dimension_numbers=NATIVE_DN, feature_group_count=groups)
    if algorithm == "xla":
        return np.asarray(lax_conv(x, w, strides, padding, **args))
    return np.asarray(
        jaxcps.conv_general_dilated(x, w, strides, padding, **args, algorithm=algorithm)
    )


def _assert_same_nonfinite(actual: np.ndarray, expected: np.ndarray, context: str) -> None:
    """Same NaN positions, same +-Inf positions, and close finite values."""
    assert actual.shape == expected.shape, context
    for name, mask in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        got, want = mask(actual), mask(expected)
        wrong = np.argwhere(got != want)
        assert wrong.size == 0, (
            f"{name} differs from lax at {len(wrong)} positions, first {tuple(wrong[0])}: "
            f"got {actual[tuple(wrong[0])]}, lax {expected[tuple(wrong[0])]}; {context}"
        )
    finite = np.isfinite(expected)
    assert finite.any(), f"test inputs leave nothing finite; {context}"
    err = np.max(np.abs(actual[finite] - expected[finite]))
    assert err <= 1e-4 * max(np.max(np.abs(expected[finite])), 1.0), f"error {err}; {context}"


def _poison(rng: np.random.Generator, a: np.ndarray, count: int, values: tuple) -> np.ndarray:
    a = a.copy()
    flat = a.reshape(-1)
    spots = rng.choice(flat.size, size=count, replace=False)
    flat[spots] = rng.choice(np.asarray(values, np.float32), size=count)
    return a


@pytest.mark.parametrize("config", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_nonfinite_activations_propagate_as_in_lax(
    rng: np.random.Generator, algorithm: str, config: tuple
) -> None:
    x = sparse_activation(rng, X_SHAPE, 0.6)
    # Inf and -Inf also meet each other in some windows (NaN there, as in lax).
    x = _poison(rng, x, 5, (np.nan, np.inf, -np.inf))
    w = weights(rng, config[1])
    _assert_same_nonfinite(
        _conv(x, w, config, algorithm), _conv(x, w, config, "xla"), f"{algorithm} {config}"
    )


@pytest.mark.parametrize("poison", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_nonfinite_weight_meets_zeros_as_in_lax(
    rng: np.random.Generator, algorithm: str, config: tuple, poison: float
) -> None:
    # Mostly zeros with an all-zero channel: a sparse kernel that skipped them would leave
    # finite values where lax has NaN.
    x = sparse_activation(rng, X_SHAPE, 0.8, dead_channels=1)
    w = weights(rng, config[1])
    w.reshape(-1)[rng.integers(w.size)] = poison
    _assert_same_nonfinite(
        _conv(x, w, config, algorithm),
        _conv(x, w, config, "xla"),
        f"{algorithm} {config} weight {poison}",
    )


@pytest.mark.parametrize("algorithm", SPARSE)
def test_nonfinite_weight_on_all_zero_input(algorithm: str) -> None:
    # Every product is 0 x w: finite weights give exact zeros, one Inf gives NaN in its output
    # channel (at every pixel: SAME padding zeros meet it too), as in lax.
    x = np.zeros(X_SHAPE, np.float32)
    w = np.ones((3, 3, 4, 6), np.float32)
    config = CONFIGS[0]
    assert np.all(_conv(x, w, config, algorithm) == 0.0)
    w[1, 1, 0, 2] = np.inf
    y = _conv(x, w, config, algorithm)
    _assert_same_nonfinite(y, _conv(x, w, config, "xla"), algorithm)
    assert np.isnan(y[..., 2]).all()


@pytest.mark.parametrize("where", [0, -1], ids=["first", "last"])
@pytest.mark.parametrize("algorithm", SPARSE)
def test_nonfinite_weight_found_in_large_weights(
    rng: np.random.Generator, algorithm: str, where: int
) -> None:
    # 3x3x128x520 = 599,040 floats: for CPS the handler scans weights this large in parallel
    # parts (of 2**18 floats), the first and the last, partial part must both be seen; for
    # CPO and sparse_direct the first weight is a dead channel's, the last in a narrow tile.
    x = sparse_activation(rng, (1, 3, 3, 128), 0.8, dead_channels=1)
    w = weights(rng, (3, 3, 128, 520))
    w.reshape(-1)[where] = np.inf
    config = ("3x3-same", w.shape, (1, 1), "SAME", (1, 1))
    _assert_same_nonfinite(
        _conv(x, w, config, algorithm), _conv(x, w, config, "xla"), f"{algorithm} {where}"
    )


@pytest.mark.parametrize("algorithm", SPARSE)
def test_nonfinite_weight_of_a_dead_channel(rng: np.random.Generator, algorithm: str) -> None:
    # Channel 1 is zero everywhere: kernels never multiply its weights (sparse_direct does not
    # even pack them), yet lax gives NaN wherever its NaN weight meets those zeros.
    x = sparse_activation(rng, X_SHAPE, 0.5)
    x[..., 1] = 0.0
    w = weights(rng, (3, 3, 4, 6))
    w[2, 0, 1, 4] = np.nan
    config = CONFIGS[0]
    _assert_same_nonfinite(_conv(x, w, config, algorithm), _conv(x, w, config, "xla"), algorithm)


@pytest.mark.parametrize("algorithm", FFI_ALGORITHMS)
def test_nonfinite_weight_on_padding_only(algorithm: str) -> None:
    # An input with no rows: every output comes from padding. Lax gives 0 there even where a
    # weight is NaN (as measured: it does not multiply the padding), and so must every kernel.
    x = np.zeros((1, 0, 5, 4), np.float32)
    w = np.ones((1, 1, 4, 6), np.float32)
    w[0, 0, 3, 2] = np.nan
    config = ("pad-only", w.shape, (1, 1), ((1, 1), (0, 0)), (1, 1))
    y, expected = _conv(x, w, config, algorithm), _conv(x, w, config, "xla")
    assert y.shape == expected.shape == (1, 2, 5, 6)
    _assert_same_nonfinite(y, expected, algorithm)


def _assert_two_groups_like_lax(
    x: np.ndarray,
    spot: tuple[int, int, int, int],
    poison: float,
    algorithm: str,
    rng: np.random.Generator,
) -> None:
    """A 3x3 SAME layer of two groups (70 -> 75 channels each) with one non-finite weight."""
    w = weights(rng, (3, 3, 70, 150))
    w[spot] = poison
    config = ("two-groups", w.shape, (1, 1), "SAME", (1, 1))
    _assert_same_nonfinite(
        _conv(x, w, config, algorithm, groups=2),
        _conv(x, w, config, "xla", groups=2),
        f"{algorithm} {poison} at {spot}",
    )


#: (kh, kw, channel, output) of one non-finite weight, for a layer of two groups of 70 input
#: and 75 output channels. CPO and sparse_direct check their weights while they pack them, in
#: pieces (per group, output tile, band of rows; both pack live channels only and check dead
#: channels' rows apart), so every kind of place is tried: each corner of the
#: weights, the first and last column of an output tile (64 wide for sparse_direct with
#: AVX-512), of each group, channels in the second 64-channel mask block, and channels dead
#: in one group only.
POISON_SPOTS = [
    (0, 0, 0, 0),
    (2, 2, 69, 149),
    (1, 1, 3, 10),  # channel 3 is dead in group 0
    (0, 2, 66, 70),  # channel 66 is dead in group 0: second block, last tile of group 0
    (2, 0, 5, 100),  # channel 5 is dead in group 1
    (2, 0, 5, 20),  # ... but live in group 0
    (1, 1, 64, 63),
    (1, 1, 10, 64),
    (0, 0, 69, 74),
    (2, 1, 0, 75),
]


@pytest.mark.parametrize("spot", POISON_SPOTS, ids=[str(s) for s in POISON_SPOTS])
@pytest.mark.parametrize("algorithm", SPARSE)
def test_nonfinite_weight_found_at_every_kind_of_place(
    rng: np.random.Generator, algorithm: str, spot: tuple[int, int, int, int]
) -> None:
    x = sparse_activation(rng, (2, 7, 9, 140), 0.7)
    for channel in (3, 66, 70 + 5):  # dead channels: 3 and 66 in group 0, 5 in group 1
        x[..., channel] = 0.0
    _assert_two_groups_like_lax(x, spot, np.nan, algorithm, rng)


@pytest.mark.parametrize("spot", [(2, 0, 5, 100), (0, 0, 69, 149)], ids=["inside", "last"])
@pytest.mark.parametrize("algorithm", SPARSE)
def test_nonfinite_weight_of_a_dead_group(
    rng: np.random.Generator, algorithm: str, spot: tuple[int, int, int, int]
) -> None:
    # Group 1's input is zero everywhere: every one of its channel blocks is dead, so no
    # kernel packs its weights, and only a check of the unpacked ones finds the NaN.
    x = sparse_activation(rng, (1, 5, 6, 140), 0.5)
    x[..., 70:] = 0.0
    _assert_two_groups_like_lax(x, spot, np.nan, algorithm, rng)


@pytest.mark.parametrize("spot", [(1, 1, 10, 5), (2, 2, 66, 70)], ids=["dead-block", "live-tail"])
@pytest.mark.parametrize("algorithm", SPARSE)
def test_nonfinite_weight_of_a_dead_block_beside_live_ones(
    rng: np.random.Generator, algorithm: str, spot: tuple[int, int, int, int]
) -> None:
    # Channels 0-63 of group 0 are zero everywhere: whatever CPO's channel block (4 to 64
    # channels) the first blocks are dead and the last is live. 40x40 outputs: CPO splits the
    # rows into bands, and each piece of a group checks its share of the dead rows.
    x = sparse_activation(rng, (1, 40, 40, 140), 0.5)
    x[..., :64] = 0.0
    _assert_two_groups_like_lax(x, spot, np.inf, algorithm, rng)
