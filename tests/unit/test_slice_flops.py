"""Slice FLOPs are counted once (``split.slice_flops``), by the rows and channels a slice really computes.

The executors (``services.executor.work.slice_flops``) and the latency model (``plan.latency.slice_load``)
counted a slice's work with two formulas that disagreed in two places:

* a channel split of a conv followed by a pool that reads only part of the conv's output rows: the
  latency model charged the conv's full map, the executors only the rows the pool reads;
* a kernel-rows band (what one worker of a sub-zone computes): the latency model ignored the band's
  output rows and charged the whole partial sum.

The executors' count won: it is what the server computes. Here both are compared with a direct count
of the convolutions that really run (torch's ``FlopCounterMode``, 2 FLOPs a multiply-add, on a model
without bias, ReLU or pooling work of its own) plus the pool's output cells.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from edgesplit.models import spec_from_dict
from edgesplit.models.build import build_module
from edgesplit.plan.latency import slice_load
from edgesplit.split import Slice, compute_slice, crop_input, make_slices, slice_flops, worker_parts
from services.executor import work

# conv 3x3 on 9 rows gives 7; the 2x2 / 2 max-pool reads rows 0-5 of them: row 6 is never needed
SPEC = spec_from_dict({
    "name": "unread-row", "input": [2, 9, 6], "num_classes": 2,
    "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel": 3, "bias": False},
        {"type": "maxpool2d", "kernel": 2, "stride": 2},
        {"type": "flatten"},
        {"type": "linear", "out_features": 2},
    ],
})


MODULE = build_module(SPEC, seed=0)
X = torch.randn(1, *SPEC.input, generator=torch.Generator().manual_seed(0))


def _onednn_conv_flops(x_shape: list[int], w_shape: list[int], *_args: object, out_shape: list[int],
                       **_kwargs: object) -> int:
    return int(conv_flop_count(x_shape, w_shape, out_shape))


# the bands' conv calls oneDNN's kernel directly (``split.ops.conv2d``), which torch's counter does not
# know: counted with torch's own conv formula, as ``aten.convolution`` is
ONEDNN = {torch.ops.aten.mkldnn_convolution: _onednn_conv_flops}


def direct_count(sl: Slice) -> float:
    """FLOPs of the convs that ``compute_slice`` really runs on the slice's input, counted by torch,
    plus ``kernel^2`` per pooled output value (``ModelSpec.layer_flops``' pool cost) when the slice
    runs the pool."""
    with FlopCounterMode(display=False, custom_mapping=ONEDNN) as counter:
        out = compute_slice(MODULE, SPEC, sl, crop_input(X, sl).contiguous())
    pool = out.numel() * 2 * 2 if sl.stop > 1 else 0
    return float(counter.get_total_flops() + pool)


@pytest.mark.parametrize("parts", [(4,), (1, 3), (2, 2)])
def test_channel_split_counts_only_the_rows_the_pool_reads(parts: tuple[int, ...]) -> None:
    per_layer = SPEC.layer_flops()
    for sl in make_slices(SPEC, 0, 2, "channels", parts):
        assert slice_flops(SPEC, sl) == pytest.approx(direct_count(sl))
        assert slice_load(SPEC, sl).flops == slice_flops(SPEC, sl)  # the latency model's is the same one
        old = (per_layer[0] + per_layer[1]) * (sl.channels[1] - sl.channels[0]) / 4  # type: ignore[index]
        assert old > direct_count(sl)  # the latency model's former count: row 6 of the conv as well


def test_kernel_rows_band_counts_its_output_rows() -> None:
    sl = make_slices(SPEC, 0, 1, "kernel-rows", (2, 1))[0]
    assert slice_flops(SPEC, sl) == pytest.approx(direct_count(sl))
    bands = worker_parts(SPEC, sl, 3)
    assert len(bands) == 3
    for part in bands:
        assert slice_flops(SPEC, part.slice) == pytest.approx(direct_count(part.slice))
        assert slice_flops(SPEC, part.slice) < slice_flops(SPEC, sl)
    assert sum(slice_flops(SPEC, p.slice) for p in bands) == pytest.approx(slice_flops(SPEC, sl))


def test_rows_slice_counts_its_halo_and_the_executor_uses_the_core_count() -> None:
    for sl in make_slices(SPEC, 0, 2, "rows", (1, 1, 1)):
        assert slice_flops(SPEC, sl) == pytest.approx(direct_count(sl))
    assert work.slice_flops is slice_flops and work.worker_parts is worker_parts
