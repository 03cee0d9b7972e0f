"""Exactness of every split strategy against the unsplit torch module, on random layer stacks."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgesplit.errors import InvalidPlan, InvalidSpec
from edgesplit.models import BUILTINS, get_spec, spec_from_dict
from edgesplit.models.build import build_module
from edgesplit.split import conv_groups, crop_input, make_slices, part_total, run_group
from edgesplit.split.runner import MODES, split_forward

torch.set_num_threads(1)


@st.composite
def layer_stacks(draw: st.DrawFn) -> dict[str, Any]:
    """A random edge stack (conv first, then conv/relu/pools) with odd kernels, strides, paddings."""
    layers: list[dict[str, Any]] = []
    n = draw(st.integers(1, 4))
    for i in range(n):
        kind = "conv2d" if i == 0 else draw(st.sampled_from(["conv2d", "relu", "maxpool2d", "avgpool2d"]))
        if kind == "conv2d":
            layers.append({"type": "conv2d", "out_channels": draw(st.integers(1, 4)),
                           "kernel": [draw(st.integers(1, 4)), draw(st.integers(1, 3))],
                           "stride": [draw(st.integers(1, 3)), draw(st.integers(1, 2))],
                           "padding": [draw(st.integers(0, 4)), draw(st.integers(0, 2))],
                           "dilation": [draw(st.integers(1, 2)), 1],
                           "bias": draw(st.booleans())})
        elif kind == "relu":
            layers.append({"type": "relu"})
        else:
            k = draw(st.integers(1, 3))
            layers.append({"type": kind, "kernel": k, "stride": draw(st.integers(1, 2)),
                           "padding": draw(st.integers(0, k // 2))})
    height = draw(st.integers(1, 14))
    spec = {"name": "random", "input": [draw(st.integers(1, 3)), height, draw(st.integers(1, 6))],
            "num_classes": 2, "layers": [*layers, {"type": "flatten"}, {"type": "linear", "out_features": 2}]}
    return spec


def _parts(draw: st.DrawFn, total: int) -> list[int]:
    """Random non-negative parts over up to 5 servers (zero-unit slices included) summing to total."""
    k = draw(st.integers(1, 5))
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=k - 1, max_size=k - 1)))
    edges = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(edges)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=layer_stacks(), data=st.data())
def test_random_groups_equal_unsplit(raw: dict[str, Any], data: st.DataObject) -> None:
    try:
        spec = spec_from_dict(raw)
    except InvalidSpec:
        assume(False)
        return
    module = build_module(spec, seed=1)
    x = torch.randn(2, *spec.input)
    with torch.no_grad():
        ref = module[: spec.n_edge](x)
    # the whole stack fused as one rows group, with random (possibly empty) bands
    total = part_total(spec, 0, spec.n_edge, "rows")
    y = run_group(module, spec, 0, spec.n_edge, "rows", _parts(data.draw, total), x)
    torch.testing.assert_close(y, ref)
    # one conv per group, each with a random strategy and random parts
    y = x
    for start, stop in conv_groups(spec):
        strategy = data.draw(st.sampled_from(["rows", "kernel-rows", "channels"]))
        total = part_total(spec, start, stop, strategy)
        y = run_group(module, spec, start, stop, strategy, _parts(data.draw, total), y)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in BUILTINS if n not in ("vgg16", "vgg16-paper")])
@pytest.mark.parametrize("servers", [2, 3, 5, 8])
def test_builtins_every_strategy(name: str, servers: int) -> None:
    spec = get_spec(name)
    module = build_module(spec, seed=0)
    x = torch.randn(1, *spec.input)
    with torch.no_grad():
        ref = module[: spec.n_edge](x)
    for mode in MODES:
        out = split_forward(module, spec, mode, servers, x).output
        rel = float((out - ref).abs().max() / ref.abs().max())
        assert rel <= 1e-5, (mode, rel)


def test_one_row_map_and_padding_beyond_halo() -> None:
    spec = spec_from_dict({"name": "thin", "input": [2, 1, 5], "num_classes": 3, "layers": [
        {"type": "conv2d", "out_channels": 3, "kernel": [3, 3], "padding": [3, 1]},
        {"type": "maxpool2d", "kernel": 3, "stride": 1, "padding": 1},
        {"type": "flatten"}, {"type": "linear", "out_features": 3}]})
    module = build_module(spec, seed=2)
    x = torch.randn(1, 2, 1, 5)
    ref = module[: spec.n_edge](x)
    rows = part_total(spec, 0, spec.n_edge, "rows")
    assert rows == 5  # padding 3 each side grows one input row into five output rows
    conv_only = make_slices(spec, 0, 1, "rows", [1, 0, 4])
    assert conv_only[0].in_rows == (0, 0) and conv_only[0].pad == (3, 0)  # entirely in the padding
    torch.testing.assert_close(run_group(module, spec, 0, 1, "rows", [1, 0, 4], x), module[:1](x))
    torch.testing.assert_close(run_group(module, spec, 0, spec.n_edge, "rows", [1, 0, 4], x), ref)


def test_kernel_rows_follows_the_paper() -> None:
    """Paper section 3.3: kernel rows [e, l) read input rows [e, h-(b-l)) (stride 1, no padding)."""
    spec = get_spec("alexnet-paper")
    h, b = 32, 8
    slices = make_slices(spec, 0, 2, "kernel-rows", [3, 5])
    assert [s.in_rows for s in slices] == [(0, h - (b - 3)), (3, h)]
    assert all(s.out_rows == (0, 25) for s in slices)  # every server returns a full-size partial sum


def test_slices_carry_only_their_rows() -> None:
    spec = get_spec("alexnet-paper")
    module = build_module(spec)
    x = torch.randn(1, *spec.input)
    slices = make_slices(spec, 0, 2, "rows", [12, 13])
    assert [crop_input(x, s).shape[2] for s in slices] == [12 + 7, 13 + 7]
    assert slices[0].out_shape(spec) == (1, 96, 12, 25)
    assert module is not None


def test_bad_parts_and_groups_are_refused() -> None:
    spec = get_spec("alexnet-paper")
    with pytest.raises(InvalidPlan, match="sum to 25"):
        make_slices(spec, 0, 2, "rows", [10, 10])
    with pytest.raises(InvalidPlan, match="at least 1 server"):
        make_slices(spec, 0, 2, "rows", [])
    with pytest.raises(InvalidPlan, match="kernel-rows"):
        make_slices(spec, 0, 4, "kernel-rows", [4, 4])
    with pytest.raises(InvalidPlan, match="edge layers"):
        make_slices(spec, 0, 99, "rows", [1])


@pytest.mark.parametrize("shape", [(1, 384, 3, 7), (1, 192, 3, 15), (2, 64, 8, 31), (1, 3, 5, 5)])
def test_band_conv_takes_onednn_and_matches_torch(shape: tuple[int, int, int, int]) -> None:
    """The bands' conv (``ops.conv2d``) equals ``F.conv2d`` to float rounding, also for the thin
    single-image bands torch would send to its native kernel; with autograd on it is ``F.conv2d``."""
    from edgesplit.split.ops import conv2d

    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g)
    w = torch.randn(16, shape[1], 3, 3, generator=g)
    b = torch.randn(16, generator=g)
    ref = torch.nn.functional.conv2d(x, w, b, (1, 1), (0, 1), (1, 1))
    with torch.no_grad():
        torch.testing.assert_close(conv2d(x, w, b, (1, 1), (0, 1), (1, 1)), ref, rtol=1e-4, atol=1e-4)
    wg = w.clone().requires_grad_(True)
    out = conv2d(x, wg, b, (1, 1), (0, 1), (1, 1))
    assert out.grad_fn is not None and "Convolution" in type(out.grad_fn).__name__
