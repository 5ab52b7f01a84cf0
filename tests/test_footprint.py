"""`jaxcps.footprint`: exact bytes of what each algorithm builds, checked on hand-computed cases.

The formulas, for x of shape (N, H, W, C), a KH x KW kernel and output (N, OH, OW, O), with
Hp the padded height (ffi/kernels/im2col.cc, ffi/kernels/mec.cc, ffi/sparse/format.{h,cc}):
- im2col: N*OH*OW * KH*KW*C float32 values                   -> N*OH*OW*KH*KW*C*4 bytes
- MEC:    N * OW rows of Hp*KW*C float32 values               -> N*OW*Hp*KW*C*4 bytes
- CPO:    per non-zero a float32 value and a uint16 index (column * block + channel); per
          row and channel block, (W + 1) uint32 offsets, blocks = groups * ceil(C/groups /
          block), where block is the channel block CPO chooses from x's density
          (`_ffi.cpo_channel_block`)                          -> nnz*6 + N*H*blocks*(W+1)*4
- CPS:    per non-zero a float32 value; per run of horizontally adjacent non-zeros a uint16
          start and a uint16 length; per row, (C + 1) uint32 run offsets and (C + 1) uint32
          value offsets                                       -> nnz*4 + runs*4 + N*H*(C+1)*8
Compression ratio of an algorithm = footprint(im2col) / footprint(algorithm).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import COMPRESSING, sparse_activation

import jaxcps
from jaxcps import _targets
from jaxcps.algorithms import KERNELS

#: Most input channels per block of CPO's compressed form.
CHANNEL_BLOCK = KERNELS["cpo"].sizes["max_channel_block"]


def fp(
    x: np.ndarray, kernel: tuple[int, ...], algorithm: str, strides=(1, 1), padding="SAME", **kw
) -> int:
    return jaxcps.footprint(x, kernel, strides, padding, algorithm, **kw)


def cpo_blocks(x: np.ndarray, groups: int = 1, kernel_cols: int = 3) -> int:
    """Channel blocks per row of CPO's compressed form of x, for a kernel `kernel_cols` wide."""
    block = _targets._ffi.cpo_channel_block(
        np.ascontiguousarray(x, np.float32), groups, kernel_cols
    )
    return groups * -(-(x.shape[3] // groups) // block)


def count_runs(x: np.ndarray) -> int:
    """Maximal runs of non-zeros along the width (axis 2) of an NHWC array."""
    nz = x != 0
    starts = nz.copy()
    starts[:, :, 1:] &= ~nz[:, :, :-1]
    return int(starts.sum())


def test_im2col_and_mec_by_hand() -> None:
    x = np.ones((2, 5, 7, 3), np.float32)
    # 3x3 SAME stride 1: OH=5, OW=7; Hp = 5 + 1 + 1 = 7.
    assert fp(x, (3, 3, 3, 8), "im2col") == 2 * 5 * 7 * 9 * 3 * 4 == 7560
    assert fp(x, (3, 3, 3, 8), "mec") == 2 * 7 * 7 * 3 * 3 * 4 == 3528
    # 3x3 VALID stride 2: OH = (5-3)//2+1 = 2, OW = (7-3)//2+1 = 3; Hp = 5.
    assert fp(x, (3, 3, 3, 8), "im2col", (2, 2), "VALID") == 2 * 2 * 3 * 9 * 3 * 4 == 1296
    assert fp(x, (3, 3, 3, 8), "mec", (2, 2), "VALID") == 2 * 3 * 5 * 3 * 3 * 4 == 1080
    # 2x4, explicit ((3, 0), (1, 2)), stride (1, 2) on (1, 4, 6, 2): Hp = 7, Wp = 9,
    # OH = 7 - 2 + 1 = 6, OW = (9 - 4)//2 + 1 = 3.
    y = np.ones((1, 4, 6, 2), np.float32)
    pad = ((3, 0), (1, 2))
    assert fp(y, (2, 4, 2, 5), "im2col", (1, 2), pad) == 6 * 3 * 2 * 4 * 2 * 4 == 1152
    assert fp(y, (2, 4, 2, 5), "mec", (1, 2), pad) == 3 * 7 * 4 * 2 * 4 == 672
    # Negative padding crops: Hp = 5 - 1 - 1 = 3, OH = 1, OW = 7.
    assert fp(x, (3, 3, 3, 8), "mec", (1, 1), ((-1, -1), (1, 1))) == 2 * 7 * 3 * 3 * 3 * 4
    assert fp(x, (3, 3, 3, 8), "im2col", (1, 1), ((-1, -1), (1, 1))) == 2 * 1 * 7 * 9 * 3 * 4
    # Empty output: nothing is lowered by im2col.
    assert fp(x, (7, 7, 3, 8), "im2col", (1, 1), "VALID") == 0


def test_sparse_by_hand() -> None:
    # N=1, H=2, W=4, C=3. Row 0: channel 0 non-zero at columns 0, 1, 2 (one run of 3) and
    # channel 1 at columns 0 and 2 (two runs); row 1: channel 2 at column 3 (one run).
    x = np.zeros((1, 2, 4, 3), np.float32)
    x[0, 0, 0:3, 0] = [1.0, 2.0, 3.0]
    x[0, 0, [0, 2], 1] = [4.0, 5.0]
    x[0, 1, 3, 2] = 6.0
    nnz, runs = 6, 4
    # CPO: one block of the 3 channels: 4 + 1 offsets per row, 2 rows.
    assert cpo_blocks(x) == 1
    assert fp(x, (3, 3, 3, 4), "cpo") == nnz * 6 + 2 * 5 * 4 == 76
    # CPS: 2 rows x (3 + 1) offsets, twice.
    assert fp(x, (3, 3, 3, 4), "cps") == nnz * 4 + runs * 4 + 2 * 4 * 8 == 104
    # The kernel, strides and padding do not change the compressed activation.
    assert fp(x, (1, 7, 3, 4), "cpo", (3, 2), "VALID") == 76
    assert fp(x, (5, 5, 3, 4), "cps", (2, 1), ((4, 4), (0, 0))) == 104


def test_sparse_all_zero_and_dense() -> None:
    zeros = np.zeros((2, 3, 5, 4), np.float32)
    assert fp(zeros, (3, 3, 4, 8), "cpo") == 2 * 3 * 6 * 4  # pointers only: one block
    assert fp(zeros, (3, 3, 4, 8), "cps") == 2 * 3 * 5 * 8
    ones = np.ones((2, 3, 5, 4), np.float32)
    nnz = 2 * 3 * 5 * 4
    assert fp(ones, (3, 3, 4, 8), "cpo") == nnz * 6 + 2 * 3 * 6 * 4
    # One run per channel and row.
    assert fp(ones, (3, 3, 4, 8), "cps") == nnz * 4 + 2 * 3 * 4 * 4 + 2 * 3 * 5 * 8


@pytest.mark.parametrize(
    "shape,groups,zeros",
    [
        ((1, 3, 5, CHANNEL_BLOCK), 1, 0.99),
        ((1, 3, 5, CHANNEL_BLOCK + 1), 1, 0.99),  # one block and one channel
        ((2, 2, 17, 2 * CHANNEL_BLOCK + 2), 1, 0.6),
        ((1, 4, 3, 6), 2, 0.6),  # a block per group
        ((1, 2, 6, 12), 4, 0.6),
        ((1, 2, 6, 10), 2, 0.6),
        ((1, 5, 9, 40), 1, 0.2),  # dense: small blocks
    ],
)
def test_sparse_formula_on_random_data(
    shape: tuple[int, ...], groups: int, zeros: float, rng: np.random.Generator
) -> None:
    """The formulas above, with nnz and runs counted by NumPy on random data."""
    x = sparse_activation(rng, shape, zeros, dead_channels=1)
    n, h, w, c = shape
    nnz, runs = int(np.count_nonzero(x)), count_runs(x)
    kernel = (3, 3, c // groups, 2 * groups)
    blocks = cpo_blocks(x, groups)
    assert blocks >= groups
    assert (
        fp(x, kernel, "cpo", feature_group_count=groups) == nnz * 6 + n * h * blocks * (w + 1) * 4
    )
    assert (
        fp(x, kernel, "cps", feature_group_count=groups) == nnz * 4 + runs * 4 + n * h * (c + 1) * 8
    )


@pytest.mark.parametrize("algorithm", COMPRESSING)
def test_compression_ratio_grows_with_zero_fraction(
    algorithm: str, rng: np.random.Generator
) -> None:
    """Zeroing more entries (each set of zeros containing the previous one) strictly raises
    the compression ratio against im2col; im2col and MEC do not depend on the values."""
    shape, kernel = (2, 12, 24, 16), (3, 3, 16, 32)
    x = rng.uniform(0.1, 1.0, shape).astype(np.float32)
    order = rng.permutation(x.size)
    ratios = []
    for zero_fraction in [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]:
        z = x.copy().ravel()
        z[order[: round(zero_fraction * z.size)]] = 0.0
        z = z.reshape(shape)
        assert fp(z, kernel, "im2col") == fp(x, kernel, "im2col")
        assert fp(z, kernel, "mec") == fp(x, kernel, "mec")
        ratios.append(fp(z, kernel, "im2col") / fp(z, kernel, algorithm))
    assert all(a < b for a, b in itertools.pairwise(ratios)), ratios


def test_cps_beats_cpo_on_long_runs_only() -> None:
    """CPS stores a run as one (start, length); with long runs it is smaller than CPO, with
    isolated non-zeros (every run of length 1) it is larger."""
    n, h, w, c = 1, 8, 32, 16
    kernel = (3, 3, c, 16)
    runs = np.zeros((n, h, w, c), np.float32)
    runs[:, :, 8:24, :] = 1.0  # half the entries non-zero, one run of 16 per row and channel
    isolated = np.zeros((n, h, w, c), np.float32)
    isolated[:, :, ::2, :] = 1.0  # half the entries non-zero, every run of length 1
    assert np.count_nonzero(runs) == np.count_nonzero(isolated)
    assert fp(runs, kernel, "cps") < fp(runs, kernel, "cpo")
    assert fp(isolated, kernel, "cps") > fp(isolated, kernel, "cpo")
    # And by how much, from the formulas: nnz = 2048, CPO offsets 8 rows * blocks * 33 * 4
    # bytes, CPS row offsets 8*17*8 = 1088 bytes; runs 128 (long) or 2048 (isolated).
    blocks = cpo_blocks(runs)
    assert blocks == cpo_blocks(isolated)
    assert fp(runs, kernel, "cpo") == fp(isolated, kernel, "cpo") == 2048 * 6 + 8 * blocks * 33 * 4
    assert fp(runs, kernel, "cps") == 2048 * 4 + 128 * 4 + 1088
    assert fp(isolated, kernel, "cps") == 2048 * 4 + 2048 * 4 + 1088


def test_sparse_beats_lowering_at_high_sparsity(rng: np.random.Generator) -> None:
    x = sparse_activation(rng, (1, 14, 14, 32), 0.9, clustered=True)
    kernel = (3, 3, 32, 32)
    im2col = fp(x, kernel, "im2col")
    assert fp(x, kernel, "mec") < im2col
    assert fp(x, kernel, "cpo") < fp(x, kernel, "mec")
    assert fp(x, kernel, "cps") < fp(x, kernel, "mec")
