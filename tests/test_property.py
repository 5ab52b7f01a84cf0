"""Property test: random convolutions through every FFI kernel equal lax.

Hypothesis draws the whole configuration: algorithm, layout, shapes (batch 0, 1x1 maps,
widths across the sparse kernels' 16-column tiles, output channels across 64-channel
blocks), strides, SAME/VALID/SAME_LOWER or explicit paddings (larger than the kernel,
negative), kernel dilation, groups (grouped, depthwise), the zero pattern (fraction, dead
channels, clustered runs) and, for CPO/CPS, the instruction set of the tile kernels. Every
kernel runs every drawn configuration (all are within the kernels' limits).

Examples: 200 by default; the environment variable JAXCPS_FUZZ_EXAMPLES sets the count
(e.g. JAXCPS_FUZZ_EXAMPLES=20000 for a long fuzz run). The run is derandomized and keeps no
example database, so CI sees the same examples every time. Sizes stay small and partly
discrete so that the number of distinct shapes, hence of compilations, stays bounded.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from conftest import FFI_ALGORITHMS, assert_close, lax_conv, sparse_activation, weights
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxcps
from jaxcps import _targets

FUZZ_EXAMPLES = int(os.environ.get("JAXCPS_FUZZ_EXAMPLES", "200"))
LAYOUTS = [("NHWC", "HWIO", "NHWC"), ("NCHW", "OIHW", "NCHW")]


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """One convolution: NHWC/HWIO shapes and every argument of conv_general_dilated."""
    groups = draw(st.sampled_from([1, 1, 1, 2, 3, "depthwise"]))
    if groups == "depthwise":
        c = draw(st.sampled_from([1, 4, 8]))
        groups, o = c, c * draw(st.sampled_from([1, 2]))
    else:
        c = groups * draw(st.integers(1, 6))
        o = groups * draw(
            st.sampled_from([1, 2, 3, 5, 9, 21, 22])
            if groups > 1
            else st.sampled_from([1, 3, 8, 16, 63, 64, 65])
        )
    h = draw(st.sampled_from([1, 2, 3, 5, 8, 12]))
    w = draw(st.sampled_from([1, 2, 4, 7, 15, 16, 17, 33]))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    kind = draw(st.sampled_from(["SAME", "VALID", "SAME_LOWER", "explicit", "explicit"]))
    if kind == "explicit":
        pairs = []
        for size in (h, w):
            lo = draw(st.integers(-size, 7))
            hi = draw(st.integers(max(-size - lo, -size), 7))  # padded size >= 0, as lax needs
            pairs.append((lo, hi))
        padding: Any = tuple(pairs)
    else:
        padding = kind
    return dict(
        algorithm=draw(st.sampled_from(FFI_ALGORITHMS)),
        isa=draw(st.sampled_from(_targets._ffi.supported_isas())),
        layout=draw(st.sampled_from(LAYOUTS)),
        x_shape=(draw(st.sampled_from([0, 1, 1, 2, 3])), h, w, c),
        w_shape=(*kernel, c // groups, o),
        strides=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=padding,
        rhs_dilation=dilation,
        groups=groups,
        zero_fraction=draw(st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0])),
        dead_channels=draw(st.integers(0, c)),
        clustered=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(cfg=configs())
def test_random_convolutions_match_lax(cfg: dict[str, Any]) -> None:
    rng = np.random.default_rng(cfg["seed"])
    x = sparse_activation(
        rng,
        cfg["x_shape"],
        cfg["zero_fraction"],
        dead_channels=cfg["dead_channels"],
        clustered=cfg["clustered"],
    )
    w = weights(rng, cfg["w_shape"])
    lhs_spec, rhs_spec, _ = cfg["layout"]
    lhs = np.transpose(x, ["NHWC".index(d) for d in lhs_spec])
    rhs = np.transpose(w, ["HWIO".index(d) for d in rhs_spec])
    kwargs = dict(
        rhs_dilation=cfg["rhs_dilation"],
        dimension_numbers=cfg["layout"],
        feature_group_count=cfg["groups"],
    )
    algorithm = cfg["algorithm"]
    want = lax_conv(lhs, rhs, cfg["strides"], cfg["padding"], **kwargs)
    original = _targets._ffi.active_isa()
    _targets._ffi.set_isa(cfg["isa"])
    try:
        got = jaxcps.conv_general_dilated(
            lhs, rhs, cfg["strides"], cfg["padding"], **kwargs, algorithm=algorithm
        )
        got.block_until_ready()
    finally:
        _targets._ffi.set_isa(original)
    assert_close(got, want, f"{cfg}; lhs {lhs.shape}, rhs {rhs.shape}")
