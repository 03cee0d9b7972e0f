"""Latency model: eq. (1)-(5), strategy-aware transfer sizes, halo recomputation."""

from __future__ import annotations

import pytest

from edgesplit.models import get_spec
from edgesplit.plan.cluster import scenario
from edgesplit.plan.dads import no_split
from edgesplit.plan.latency import (
    LatencyBreakdown,
    cloud_compute_time,
    cloud_transfer_time,
    compute_time,
    predict,
    round_trip_time,
    server_times,
    slice_load,
)
from edgesplit.plan.planner import StagePlan
from edgesplit.split import make_slices


def test_equations_1_to_4() -> None:
    assert compute_time(0.5 * 4e9, 10, 80e9) == pytest.approx(2.5e-3)  # x*size/(k*eta)
    assert cloud_compute_time(1e9, 2e11) == pytest.approx(5e-3)  # size_full/k_c
    assert round_trip_time(1000, 3000, 8e6) == pytest.approx(4e-3)  # (o_out + o_merged)/ra_m
    assert cloud_transfer_time(1000, 8e6) == pytest.approx(1e-3)  # o_c/ra_c


def test_no_split_alexnet_on_one_thread_is_38_5_ms() -> None:
    spec = get_spec("alexnet-paper")
    # 2.99 GFLOP of convs + 0.087 GFLOP of FC on one 80 GFLOPS thread (DESIGN.md section 4)
    assert no_split(spec, scenario("paper")).total_s == pytest.approx(38.5e-3, abs=0.1e-3)


def test_rows_ships_its_rows_plus_halo_and_returns_its_rows() -> None:
    spec = get_spec("digits-cnn")  # conv 3x3 pad 1 on 1x8x8, relu, conv 3x3 pad 1 -> 32x8x8, relu, pool
    top, mid, _ = make_slices(spec, 0, 2, "rows", [3, 3, 2])
    assert slice_load(spec, mid).in_bytes == 4 * 1 * 5 * 8  # rows 2..7: halo of 1 above and below
    assert slice_load(spec, mid).out_bytes == 4 * 16 * 3 * 8
    assert slice_load(spec, top).in_bytes == 4 * 1 * 4 * 8  # the padding row is not shipped


def test_fused_rows_count_the_halo_recomputation() -> None:
    spec = get_spec("digits-cnn")
    flops = spec.layer_flops()
    slices = make_slices(spec, 0, 5, "rows", [1, 1, 1, 1])
    loads = [slice_load(spec, s).flops for s in slices]
    assert sum(loads) > sum(flops[:5])  # neighbours recompute the rows of the halo
    whole = make_slices(spec, 0, 5, "rows", [4])[0]
    assert slice_load(spec, whole).flops == pytest.approx(sum(flops[:5]))


def test_kernel_rows_returns_a_full_size_partial_sum() -> None:
    spec = get_spec("alexnet-paper")
    slices = make_slices(spec, 0, 2, "kernel-rows", [2, 3, 3])
    full_out = 4 * 96 * 25 * 25
    assert [slice_load(spec, s).out_bytes for s in slices] == [full_out] * 3
    assert slice_load(spec, slices[0]).in_bytes == 4 * 3 * 26 * 32  # input rows [e, h - (b - l))
    assert sum(slice_load(spec, s).flops for s in slices) == pytest.approx(spec.layer_flops()[0])


def test_channels_ships_the_whole_input_and_returns_its_channels() -> None:
    spec = get_spec("alexnet-paper")
    a, b = make_slices(spec, 2, 4, "channels", [64, 192])
    assert slice_load(spec, a).in_bytes == slice_load(spec, b).in_bytes == 4 * 96 * 25 * 25
    assert slice_load(spec, a).out_bytes == 4 * 64 * 18 * 18
    assert slice_load(spec, a).flops + slice_load(spec, b).flops == pytest.approx(
        sum(spec.layer_flops()[2:4]))


def test_stage_time_is_compute_plus_round_trip_plus_overhead() -> None:
    spec = get_spec("alexnet-paper")
    cluster = scenario("edge-1g")
    stage = StagePlan(0, 2, "rows", (0, 1, 2), (10, 15, 0), (4, 4, 4))
    times = server_times(spec, cluster, stage)
    sl = make_slices(spec, 0, 2, "rows", [10, 15, 0])
    load = slice_load(spec, sl[0])
    assert times[0].compute_s == pytest.approx(load.flops / (4 * 80e9))
    assert times[0].transfer_s == pytest.approx(8 * (load.in_bytes + load.out_bytes) / 1e9)
    assert times[0].overhead_s == pytest.approx(0.2e-3)
    assert times[2].total_s == 0.0  # an empty part sends no request


def test_predict_sums_stages_and_cloud_and_round_trips() -> None:
    spec = get_spec("alexnet-paper")
    cluster = scenario("paper")
    stages = [StagePlan(0, 10, "rows", (0,), (5,), (20,))]
    p = predict(spec, cluster, stages)
    assert p.edge_s == pytest.approx(p.stages[0].total_s)
    assert p.cloud_transfer_s == pytest.approx(8 * 4 * 256 * 5 * 5 / cluster.cloud.link_bps)
    assert p.cloud_compute_s == pytest.approx(spec.cloud_flops() / cluster.cloud.flops)
    assert p.total_s == pytest.approx(p.edge_s + p.cloud_transfer_s + p.cloud_compute_s)
    assert p.stages[0].compute_s == pytest.approx(spec.edge_flops() / (20 * 80e9))
    assert LatencyBreakdown.from_dict(p.to_dict()) == p


def test_a_batch_costs_b_times_the_work_and_one_request_overhead() -> None:
    spec = get_spec("alexnet-paper")
    cluster = scenario("edge-1g")
    stages = [StagePlan(0, 2, "rows", (0, 1, 2), (10, 15, 0), (4, 4, 4)),
              StagePlan(2, len(spec.layers[: spec.n_edge]), "rows", (0, 1), (3, 2), (4, 4))]
    one, four = predict(spec, cluster, stages), predict(spec, cluster, stages, batch=4)
    assert predict(spec, cluster, stages, batch=1) == one  # the default is batch 1, unchanged
    for a, b in zip(one.stages, four.stages, strict=True):
        assert b.compute_s == pytest.approx(4 * a.compute_s)
        assert b.transfer_s == pytest.approx(4 * a.transfer_s)
        assert b.overhead_s == a.overhead_s  # one request per stage for the whole batch
    assert four.cloud_compute_s == pytest.approx(4 * one.cloud_compute_s)
    assert four.cloud_transfer_s == pytest.approx(4 * one.cloud_transfer_s)
    assert four.cloud_overhead_s == one.cloud_overhead_s
    assert one.total_s < four.total_s < 4 * one.total_s  # per task, a batch is cheaper


def test_the_simulator_costs_a_batch_like_the_latency_model() -> None:
    from edgesplit.sim.workload import pipeline

    spec = get_spec("alexnet-paper")
    cluster = scenario("edge-1g")
    stages = [StagePlan(0, spec.n_edge, "rows", (0, 1), (3, 2), (4, 4))]
    one = pipeline(spec, cluster, stages)
    assert one.batched(1) == one
    four = one.batched(3)
    assert four.single_task_s() == pytest.approx(predict(spec, cluster, stages, batch=3).total_s
                                                 - cluster.controller_overhead_s)
    assert one.single_task_s() < four.single_task_s() < 3 * one.single_task_s()
