"""Parity of every FFI kernel (im2col, MEC, CPO, CPS, sparse_direct) with lax and with the C++ reference.

The full product of the axes (algorithm x strides x padding x kernel x layout x zero fraction
x dead channels x shapes x batch) is far too big, so `GRID` is a balanced covering design:
each axis is a column holding each of its values equally often, shuffled independently with
a fixed seed, so every value of every axis appears in several cases and in varied company.
Every case runs every kernel (and the reference) on the same inputs. `EDGE_CASES` adds
hand-picked configurations at the sparse kernels' tile boundaries (their sizes read from the
compiled module) and at the edges of padding, each tagged with what it probes. Dilation and
groups have their own grid, and the cases with a tag in `ISA_TAGS`, with a slice of the
grids, run under each instruction set of the sparse kernels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from conftest import (
    FFI_ALGORITHMS,
    ISAS,
    NATIVE_DN,
    SPARSE,
    assert_close,
    lax_conv,
    reference_conv,
    sparse_activation,
    use_isa,
    weights,
)

import jaxcps
from jaxcps import _targets
from jaxcps.algorithms import KERNELS
from jaxcps.geometry import resolve_conv

#: The sparse kernels' tiles: CPS tiles of output columns and channels, CPO's largest
#: input-channel block.
TILE_COLUMNS = KERNELS["cps"].sizes["max_tile_w"]
TILE_CHANNELS = KERNELS["cps"].sizes["tile_o"]
CHANNEL_BLOCK = KERNELS["cpo"].sizes["max_channel_block"]
#: Most output channels CPO keeps in registers per pixel (with the active instruction set).
OUTPUT_BLOCK = KERNELS["cpo"].sizes["max_o_block"]
#: sparse_direct: the widest output tile, and the input channels past which a 3x3 tile's
#: packed weights are split into channel chunks that accumulate in the output (with the
#: instruction set active at import and this CPU's L2 cache).
DIRECT_TILE = KERNELS["sparse_direct"].sizes["max_o_block"]
DIRECT_CHUNK_CHANNELS = KERNELS["sparse_direct"].sizes["max_chunk_weight_bytes"] // (
    9 * DIRECT_TILE * 4
)

#: Layout name -> dimension_numbers; "mixed" checks that each operand is moved on its own.
LAYOUTS = {
    "NHWC": ("NHWC", "HWIO", "NHWC"),
    "NCHW": ("NCHW", "OIHW", "NCHW"),
    "mixed": ("NCHW", "HWIO", "NHWC"),
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One convolution: NHWC input shape, kernel size, output channels and the rest; `tags`
    say what an edge case probes."""

    n: int
    h: int
    w: int
    c: int
    kernel: tuple[int, int]
    o: int
    strides: tuple[int, int] = (1, 1)
    padding: Any = "SAME"
    layout: str = "NHWC"
    zero_fraction: float = 0.5
    dead_channels: int = 0
    rhs_dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    clustered: bool = False
    tags: tuple[str, ...] = ()

    def __str__(self) -> str:
        pad = (
            self.padding
            if isinstance(self.padding, str)
            else "x".join(f"{lo}_{hi}" for lo, hi in self.padding)
        )
        return (
            f"x{self.n}x{self.h}x{self.w}x{self.c}-k{self.kernel[0]}x{self.kernel[1]}-o{self.o}"
            f"-s{self.strides[0]}{self.strides[1]}-p{pad}-{self.layout}-z{self.zero_fraction}"
            f"-d{self.dead_channels}-r{self.rhs_dilation[0]}{self.rhs_dilation[1]}"
            f"-g{self.groups}{'-runs' if self.clustered else ''}"
        )


def covering(axes: dict[str, Sequence[Any]], count: int, seed: int) -> list[dict[str, Any]]:
    """`count` combinations in which each value of each axis appears equally often (+-1),
    the columns shuffled independently (a balanced random covering design)."""
    rng = np.random.default_rng(seed)
    columns = {
        name: [values[i] for i in rng.permutation(np.arange(count) % len(values))]
        for name, values in axes.items()
    }
    return [{name: column[i] for name, column in columns.items()} for i in range(count)]


def _grid() -> list[Case]:
    axes = {
        "kernel": [(1, 1), (3, 3), (5, 5), (1, 7), (7, 1), (2, 4)],
        "strides": [(1, 1), (2, 2), (3, 3), (1, 3), (2, 1)],
        "padding": [
            "SAME",
            "VALID",
            "SAME_LOWER",
            ((1, 0), (0, 2)),  # asymmetric
            ((4, 6), (7, 5)),  # larger than every kernel
            ((-1, 1), (0, -1)),  # negative (crops the input)
        ],
        "layout": list(LAYOUTS),
        "zero_fraction": [0.0, 0.5, 0.9, 1.0],
        "dead": [False, True],
        "spatial": [(1, 1), (2, 3), (5, 16), (7, 17), (6, 33), (11, 9), (4, 47)],
        "c": [1, 3, 8, 17],
        "o": [1, 8, TILE_CHANNELS - 1, TILE_CHANNELS, TILE_CHANNELS + 1, 2 * TILE_CHANNELS + 2],
        "n": [1, 3, 0, 1, 3],  # batch 0 in a fifth of the cases
    }
    cases = []
    for combo in covering(axes, 72, seed=2):
        c = combo["c"]
        cases.append(
            Case(
                n=combo["n"],
                h=combo["spatial"][0],
                w=combo["spatial"][1],
                c=c,
                kernel=combo["kernel"],
                o=combo["o"],
                strides=combo["strides"],
                padding=combo["padding"],
                layout=combo["layout"],
                zero_fraction=combo["zero_fraction"],
                dead_channels=max(1, c // 2) if combo["dead"] else 0,
            )
        )
    return cases


GRID = _grid()

EDGE_CASES = [
    # Output widths below, at and above a tile of output columns and its multiples, and
    # output channels below, at and above a tile of output channels.
    *(
        Case(1, 3, w, 4, (3, 3), o, tags=("tile-edges",))
        for w, o in [
            (TILE_COLUMNS - 1, TILE_CHANNELS - 1),
            (TILE_COLUMNS, TILE_CHANNELS),
            (TILE_COLUMNS + 1, TILE_CHANNELS + 1),
            (2 * TILE_COLUMNS, 1),
            (2 * TILE_COLUMNS + 1, 2 * TILE_CHANNELS + 2),
        ]
    ),
    Case(  # one output column over a tile, at stride 3
        2,
        4,
        3 * TILE_COLUMNS + 1,
        5,
        (1, 1),
        2 * TILE_CHANNELS,
        strides=(1, 3),
        padding="VALID",
        tags=("tile-edges",),
    ),
    # 1x1 spatial: the 3x3 window sees one pixel, or (VALID) no output at all.
    Case(3, 1, 1, 6, (3, 3), 65, padding="SAME", zero_fraction=0.0, tags=("tiny-map",)),
    Case(3, 1, 1, 6, (3, 3), 8, padding="VALID", tags=("tiny-map",)),
    Case(1, 1, 1, 1, (1, 1), 1, zero_fraction=0.0, tags=("tiny-map",)),
    # Padding larger than the kernel: whole output rows and columns see only padding.
    Case(2, 3, 5, 4, (1, 1), 9, padding=((5, 0), (0, 6)), zero_fraction=0.0, tags=("padding",)),
    Case(1, 4, 4, 3, (2, 4), 9, strides=(3, 2), padding=((9, 9), (9, 9)), tags=("padding",)),
    # The same with two channel blocks per group and several whole-vector output blocks (144:
    # a last block of 16 on every instruction set) or two groups, where CPO's last channel
    # block stores its sums to the output: rows of padding only copy the first block's.
    *(
        Case(
            2,
            4,
            6,
            40 * g,
            (3, 3),
            o,
            strides=s,
            padding=((5, 4), (1, 6)),
            zero_fraction=0.3,
            groups=g,
            tags=("padding", "channel-blocks"),
        )
        for o, s, g in [(144, (1, 1), 1), (144, (2, 1), 1), (64, (1, 1), 2)]
    ),
    # Negative padding: crop both sides, or crop so far that one output remains.
    Case(2, 6, 9, 3, (3, 3), 16, padding=((-2, 0), (1, -3)), tags=("negative-padding",)),
    Case(
        1,
        5,
        5,
        2,
        (3, 3),
        4,
        padding=((-1, -1), (-1, -1)),
        zero_fraction=0.0,
        tags=("negative-padding",),
    ),
    Case(
        2,
        3,
        6,
        4,
        (2, 2),
        65,
        padding=((-4, 3), (2, -7)),
        zero_fraction=0.0,
        tags=("negative-padding",),
    ),
    # Padded size exactly the kernel extent, and one less (empty output).
    Case(1, 3, 3, 2, (5, 5), 7, padding=((1, 1), (1, 1)), tags=("padding",)),
    Case(1, 3, 3, 2, (5, 5), 7, padding=((1, 0), (1, 1)), tags=("padding",)),
    # Stride larger than the kernel: inputs between windows are never read.
    Case(
        2,
        10,
        11,
        3,
        (1, 1),
        5,
        strides=(3, 3),
        padding="VALID",
        zero_fraction=0.0,
        tags=("stride-skips-inputs",),
    ),
    Case(1, 8, 40, 3, (2, 2), 17, strides=(3, 3), padding="SAME", tags=("stride-skips-inputs",)),
    # All channels dead; all but one dead; clustered zeros (long runs, the CPS case).
    Case(2, 6, 20, 4, (3, 3), 64, dead_channels=4, zero_fraction=1.0, tags=("dead-channels",)),
    Case(1, 6, 20, 4, (3, 3), 65, dead_channels=3, zero_fraction=0.75, tags=("dead-channels",)),
    Case(2, 7, 37, 8, (3, 3), 70, zero_fraction=0.9, clustered=True, tags=("clustered-runs",)),
    Case(
        1,
        9,
        18,
        5,
        (5, 5),
        33,
        strides=(2, 2),
        zero_fraction=0.5,
        clustered=True,
        layout="NCHW",
        tags=("clustered-runs",),
    ),
    # An 11x11 kernel, and a whole block of input channels.
    Case(1, 13, 14, 3, (11, 11), 20, padding="SAME", tags=("large-kernel",)),
    Case(1, 6, 6, CHANNEL_BLOCK, (3, 3), TILE_CHANNELS, zero_fraction=0.9, tags=("channel-block",)),
    # Channel blocks follow the density: many small ones with a short last one (dense), few
    # large ones (sparse), and whole blocks of dead channels, which CPO skips.
    Case(1, 5, 9, 2 * CHANNEL_BLOCK + 6, (3, 3), 20, zero_fraction=0.0, tags=("channel-block",)),
    Case(1, 5, 9, 2 * CHANNEL_BLOCK + 2, (3, 3), 20, zero_fraction=0.99, tags=("channel-block",)),
    Case(2, 5, 9, 40, (3, 3), 24, dead_channels=24, zero_fraction=0.8, tags=("dead-channels",)),
    # Output channels around the widest register block, with a narrow tail.
    *(
        Case(1, 4, 7, 6, (3, 3), o, zero_fraction=0.5, tags=("tile-edges",))
        for o in (OUTPUT_BLOCK - 1, OUTPUT_BLOCK, OUTPUT_BLOCK + 17)
    ),
    # sparse_direct: channels in two chunks (the second accumulates, also into a narrow last
    # tile), and output sizes that leave 1-row, 2-row and 1-column pixel blocks.
    Case(
        1,
        3,
        5,
        DIRECT_CHUNK_CHANNELS + 70,
        (3, 3),
        DIRECT_TILE + 6,
        zero_fraction=0.5,
        tags=("channel-chunks",),
    ),
    Case(2, 7, 9, 66, (3, 3), DIRECT_TILE, zero_fraction=0.3, tags=("tile-edges",)),
    Case(1, 8, 7, 66, (3, 3), DIRECT_TILE, zero_fraction=0.3, tags=("tile-edges",)),
    # Kernels taller than the rows two output rows share (both walk their own input rows).
    Case(1, 80, 8, 4, (48, 1), 8, padding="SAME", tags=("large-kernel",)),
    Case(2, 41, 5, 3, (33, 3), 5, strides=(2, 1), padding="SAME", tags=("large-kernel",)),
]


def _dilation_grid() -> list[Case]:
    axes = {
        "rhs_dilation": [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2)],
        # (groups, input channels, output channels): grouped and depthwise (x1, x2).
        "grouping": [(2, 4, 6), (4, 8, 8), (3, 3, 3), (6, 6, 12), (1, 5, 7), (8, 8, 72)],
        "kernel": [(3, 3), (2, 4), (1, 7), (5, 5)],
        "strides": [(1, 1), (2, 2), (1, 3)],
        "padding": ["SAME", "VALID", ((2, 0), (1, 3)), ((-1, 2), (3, -1))],
        "layout": list(LAYOUTS),
        "zero_fraction": [0.0, 0.5, 0.9, 1.0],
        "spatial": [(9, 17), (6, 33), (12, 7)],
        "n": [1, 3, 2, 1, 3, 0],
    }
    cases = []
    for combo in covering(axes, 30, seed=3):
        groups, c, o = combo["grouping"]
        cases.append(
            Case(
                n=combo["n"],
                h=combo["spatial"][0],
                w=combo["spatial"][1],
                c=c,
                kernel=combo["kernel"],
                o=o,
                strides=combo["strides"],
                padding=combo["padding"],
                layout=combo["layout"],
                zero_fraction=combo["zero_fraction"],
                rhs_dilation=combo["rhs_dilation"],
                groups=groups,
            )
        )
    return cases


DILATION_GRID = _dilation_grid()


def _inputs(case: Case, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """NHWC activation and HWIO weights of `case`."""
    x = sparse_activation(
        rng,
        (case.n, case.h, case.w, case.c),
        case.zero_fraction,
        dead_channels=case.dead_channels,
        clustered=case.clustered,
    )
    w = weights(rng, (*case.kernel, case.c // case.groups, case.o))
    return x, w


def _to_layout(x: np.ndarray, w: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    lhs, rhs, _ = LAYOUTS[layout]
    return (
        np.ascontiguousarray(np.transpose(x, ["NHWC".index(d) for d in lhs])),
        np.ascontiguousarray(np.transpose(w, ["HWIO".index(d) for d in rhs])),
    )


def _from_native_output(y: np.ndarray, layout: str) -> np.ndarray:
    return np.transpose(y, ["NHWC".index(d) for d in LAYOUTS[layout][2]])


def check_case(case: Case, rng: np.random.Generator, algorithms: Sequence[str]) -> None:
    """Runs `algorithms` on `case` and compares each with lax (and lax with the reference)."""
    x, w = _inputs(case, rng)
    lhs, rhs = _to_layout(x, w, case.layout)
    kwargs = dict(
        rhs_dilation=case.rhs_dilation,
        dimension_numbers=LAYOUTS[case.layout],
        feature_group_count=case.groups,
    )
    expected = np.asarray(lax_conv(lhs, rhs, case.strides, case.padding, **kwargs))
    spec = resolve_conv(
        x.shape,
        w.shape,
        case.strides,
        case.padding,
        rhs_dilation=case.rhs_dilation,
        dimension_numbers=NATIVE_DN,
        feature_group_count=case.groups,
    ).spec()
    context = f"case {case}: lhs {lhs.shape}, rhs {rhs.shape}, out {expected.shape}"
    reference = _from_native_output(np.asarray(reference_conv(x, w, spec)), case.layout)
    assert_close(reference, expected, f"reference vs lax; {context}")
    for algorithm in algorithms:
        got = jaxcps.conv_general_dilated(
            lhs, rhs, case.strides, case.padding, **kwargs, algorithm=algorithm
        )
        assert got.dtype == np.float32
        assert_close(got, expected, f"{algorithm} vs lax; {context}")
        assert_close(got, reference, f"{algorithm} vs reference; {context}")


def test_grid_covers_every_value() -> None:
    """The covering designs hold every value of every axis, each several times."""

    def counts(values: list[Any]) -> dict[Any, int]:
        return {str(v): values.count(v) for v in values}

    cases = GRID
    for name, want in [
        ("strides", {"(1, 1)", "(2, 2)", "(3, 3)"}),
        ("kernel", {"(1, 1)", "(3, 3)", "(5, 5)", "(1, 7)", "(7, 1)", "(2, 4)"}),
        ("layout", {"NHWC", "NCHW"}),
        ("zero_fraction", {"0.0", "0.5", "0.9", "1.0"}),
        ("n", {"0", "1", "3"}),
        ("o", {str(o) for o in (1, TILE_CHANNELS - 1, TILE_CHANNELS, TILE_CHANNELS + 1)}),
    ]:
        seen = counts([getattr(c, name) for c in cases])
        assert want <= seen.keys(), (name, seen)
        assert min(seen[v] for v in want) >= 4, (name, seen)
    paddings = {c.padding if isinstance(c.padding, str) else "explicit" for c in cases}
    assert paddings == {"SAME", "VALID", "SAME_LOWER", "explicit"}
    assert sum(c.dead_channels > 0 for c in cases) >= 20
    assert sum(c.rhs_dilation[0] > 1 for c in DILATION_GRID) >= 10  # height dilation
    assert sum(c.rhs_dilation[1] > 1 for c in DILATION_GRID) >= 10  # width dilation


@pytest.mark.parametrize("case", GRID, ids=str)
def test_grid(case: Case, rng: np.random.Generator) -> None:
    check_case(case, rng, FFI_ALGORITHMS)


@pytest.mark.parametrize("case", EDGE_CASES, ids=str)
def test_edges(case: Case, rng: np.random.Generator) -> None:
    check_case(case, rng, FFI_ALGORITHMS)


@pytest.mark.parametrize("case", DILATION_GRID, ids=str)
def test_dilation_and_groups(case: Case, rng: np.random.Generator) -> None:
    """Kernel dilation along either axis and grouped/depthwise convolutions: every kernel
    runs them (MEC included, whose lowering is along the width only)."""
    check_case(case, rng, FFI_ALGORITHMS)


def test_supported_isas() -> None:
    supported = jaxcps.supported_isas()
    assert supported[0] == ISAS[0]  # the portable set runs everywhere
    assert set(supported) <= set(ISAS)
    assert jaxcps.active_isa() in supported


def test_set_isa_rejects_unknown(restore_isa: None) -> None:
    with pytest.raises(ValueError, match="unknown instruction set"):
        _targets._ffi.set_isa("sse9")


#: Edge cases that also run under every instruction set, by tag: the tiles, strides that skip
#: inputs, dead channels (which the builders skip), clustered runs (which the AVX-512 CPS
#: builder reads off bitmasks) and several channel blocks (whose last stores to the output).
ISA_TAGS = (
    "tile-edges",
    "stride-skips-inputs",
    "dead-channels",
    "clustered-runs",
    "channel-blocks",
)
#: Cases run under every instruction set: the tagged edges and every 8th/6th case of the grids.
ISA_CASES = [c for c in EDGE_CASES if set(c.tags) & set(ISA_TAGS)] + GRID[::8] + DILATION_GRID[::6]


@pytest.mark.parametrize("isa", ISAS)
def test_isa_parity(isa: str, restore_isa: None, rng: np.random.Generator) -> None:
    """The kernels that skip zeros (CPO, CPS, sparse_direct) under each instruction set of
    their tile kernels."""
    use_isa(isa)
    for case in ISA_CASES:
        check_case(case, rng, SPARSE)


@pytest.mark.parametrize("isa", ISAS)
def test_cpo_trailing_channel_blocks_dead(
    isa: str, restore_isa: None, rng: np.random.Generator
) -> None:
    """CPO's last live channel block, not the group's last, stores the sums to the output: the
    trailing channels here are all zero, so several blocks are live and the last ones dead."""
    use_isa(isa)
    x = sparse_activation(rng, (2, 5, 7, 256), 0.3)
    x[..., 128:] = 0.0
    w = weights(rng, (3, 3, 256, 144))
    for padding in ["SAME", ((4, 3), (0, 5))]:
        expected = lax_conv(x, w, (1, 1), padding, dimension_numbers=NATIVE_DN)
        got = jaxcps.conv_general_dilated(
            x, w, (1, 1), padding, dimension_numbers=NATIVE_DN, algorithm="cpo"
        )
        assert_close(got, expected, f"cpo under {isa}, padding {padding}")
