"""Planner: valid plans, exact split inference with the plan's stages, ours <= paper, exclude, JSON."""

from __future__ import annotations

import json

import pytest
import torch

from edgesplit.errors import InvalidPlan
from edgesplit.models import BUILTINS, ModelSpec, get_spec, spec_from_dict
from edgesplit.models.build import build_module
from edgesplit.plan.cluster import Cloud, Cluster, Server, scenario
from edgesplit.plan.latency import predict
from edgesplit.plan.planner import Plan, StagePlan, apportion, make_plan
from edgesplit.split import conv_groups, part_total, run_group

SMALL = spec_from_dict({
    "name": "small", "input": [3, 21, 17], "num_classes": 5,
    "layers": [
        {"type": "conv2d", "out_channels": 6, "kernel": [3, 5], "stride": 1, "padding": [1, 2]},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
        {"type": "conv2d", "out_channels": 8, "kernel": 3, "stride": 2, "padding": 0, "dilation": 2},
        {"type": "relu"},
        {"type": "avgpool2d", "kernel": 2, "stride": 1},
        {"type": "conv2d", "out_channels": 4, "kernel": 1},
        {"type": "flatten"},
        {"type": "linear", "out_features": 5}]})

HETERO = Cluster(
    tuple(Server(f"s{m}", threads=t, flops_per_thread=f, link_bps=b, overhead_s=o)
          for m, (t, f, b, o) in enumerate([(14, 80e9, 1e9, 2e-4), (8, 40e9, 1e10, 0.0),
                                            (16, 80e9, 1e8, 1e-3), (20, 60e9, 1e9, 2e-4)])),
    Cloud(2e11, 1e8))

CLUSTERS = {"paper": scenario("paper", 2), "edge-1g": scenario("edge-1g", 2), "hetero": HETERO}


def _check_valid(plan: Plan, spec: ModelSpec, cluster: Cluster) -> None:
    plan.validate(spec, len(cluster.servers))
    for st in plan.stages:
        assert sum(st.parts) == part_total(spec, st.start, st.stop, st.strategy)
        assert len(st.slices(spec)) == len(st.servers)
    for m in range(len(cluster.servers)):
        used = [k for st in plan.stages for s, k in zip(st.servers, st.threads, strict=True) if s == m]
        assert sum(used) <= cluster.servers[m].threads  # eq. (5f)


@pytest.mark.parametrize("model", BUILTINS)
@pytest.mark.parametrize("where", sorted(CLUSTERS))
def test_plans_are_valid_and_ours_is_never_worse(model: str, where: str) -> None:
    spec, cluster = get_spec(model), CLUSTERS[where]
    ours = make_plan(spec, cluster, "edgesplit")
    paper = make_plan(spec, cluster, "paper")
    conv = make_plan(spec, cluster, "edgesplit", one_conv_per_group=True)
    for plan in (ours, paper, conv):
        _check_valid(plan, spec, cluster)
    assert ours.predicted.edge_s <= paper.predicted.edge_s * (1 + 1e-12)
    assert conv.predicted.edge_s <= paper.predicted.edge_s * (1 + 1e-12)
    assert [(s.start, s.stop) for s in conv.stages] == conv_groups(spec)
    assert [(s.start, s.stop) for s in paper.stages] == conv_groups(spec)


def test_paper_plan_is_kernel_rows_on_at_most_kernel_height_servers() -> None:
    spec = get_spec("vgg16-paper")
    plan = make_plan(spec, scenario("paper"), "paper")
    assert {s.strategy for s in plan.stages} == {"kernel-rows"}
    assert all(len(s.servers) <= 3 for s in plan.stages)
    # the zone of 20 threads split across 13 convs by FLOPs, at least 1 each
    assert sum(s.threads[0] for s in plan.stages) == 20 and min(s.threads[0] for s in plan.stages) >= 1


def test_edge_1g_target_at_least_2x() -> None:
    for model in ("alexnet-paper", "vgg16-paper"):
        spec, cluster = get_spec(model), scenario("edge-1g")
        ours, paper = make_plan(spec, cluster), make_plan(spec, cluster, "paper")
        assert paper.predicted.edge_s >= 2 * ours.predicted.edge_s


def test_servers_whose_round_trip_costs_more_than_it_saves_are_left_out() -> None:
    # server 0 answers at once; the others pay 1 ms per request, more than all of digits-cnn's compute
    servers = (Server("fast", 20, 80e9, 1e9), *(Server(f"slow{m}", 20, 80e9, 1e9, overhead_s=1e-3)
                                              for m in range(3)))
    cluster = Cluster(servers, Cloud(2e11, 1e8))
    plan = make_plan(get_spec("digits-cnn"), cluster)
    assert all(st.servers == (0,) for st in plan.stages)
    # vgg16's convs are worth the millisecond: every server takes part
    big = make_plan(get_spec("vgg16-paper"), cluster)
    assert {m for st in big.stages for m in st.servers} == {0, 1, 2, 3}


@pytest.mark.parametrize("spec", [get_spec("digits-cnn"), SMALL], ids=["digits-cnn", "small"])
@pytest.mark.parametrize("split", ["edgesplit", "paper", "one-conv"])
@pytest.mark.parametrize("where", sorted(CLUSTERS))
def test_running_the_plan_equals_the_unsplit_module(spec: ModelSpec, split: str, where: str) -> None:
    torch.manual_seed(0)
    module = build_module(spec, seed=0).eval()
    cluster = CLUSTERS[where]
    plan = make_plan(spec, cluster, "paper" if split == "paper" else "edgesplit",
                     one_conv_per_group=split == "one-conv")
    x = torch.randn(2, *spec.input, generator=torch.Generator().manual_seed(1))
    y = x
    for st in plan.stages:
        y = run_group(module, spec, st.start, st.stop, st.strategy, st.parts, y)
    with torch.no_grad():
        ref = module[: spec.n_edge](x)
    torch.testing.assert_close(y, ref)


def test_plans_with_many_servers_split_wide_maps_exactly() -> None:
    spec = SMALL
    cluster = Cluster(tuple(Server(f"s{m}", 20, 80e9, 1e12) for m in range(12)), Cloud(2e11, 1e8))
    plan = make_plan(spec, cluster)
    module = build_module(spec, seed=3).eval()
    x = torch.randn(1, *spec.input, generator=torch.Generator().manual_seed(2))
    y = x
    for st in plan.stages:
        y = run_group(module, spec, st.start, st.stop, st.strategy, st.parts, y)
    with torch.no_grad():
        torch.testing.assert_close(y, module[: spec.n_edge](x))


def test_exclude_drops_servers() -> None:
    spec, cluster = get_spec("vgg16-paper"), scenario("paper")
    for split in ("edgesplit", "paper"):
        plan = make_plan(spec, cluster, split, exclude=frozenset({"ex0", 3}))  # type: ignore[arg-type]
        assert all(0 not in s.servers and 3 not in s.servers for s in plan.stages)
        _check_valid(plan, spec, cluster)
    with pytest.raises(InvalidPlan, match="all 8 servers are excluded"):
        make_plan(spec, cluster, exclude=frozenset(range(8)))
    with pytest.raises(InvalidPlan, match="no server named"):
        make_plan(spec, cluster, exclude=frozenset({"ex42"}))


def test_plan_json_round_trip() -> None:
    plan = make_plan(get_spec("alexnet-paper"), scenario("edge-1g"))
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    with pytest.raises(InvalidPlan, match="malformed plan"):
        Plan.from_dict({"model": "x"})


def test_given_threads_are_used() -> None:
    spec, cluster = get_spec("alexnet-paper"), scenario("paper")
    threads = [[4] * 8, [4] * 8, [4] * 8, [4] * 8, [4] * 8]
    for split in ("edgesplit", "paper"):
        plan = make_plan(spec, cluster, split, threads=threads)  # type: ignore[arg-type]
        assert all(set(s.threads) == {4} for s in plan.stages)
        assert [(s.start, s.stop) for s in plan.stages] == conv_groups(spec)
    with pytest.raises(InvalidPlan, match="5 stages x 8 servers"):
        make_plan(spec, cluster, threads=[[4] * 8])
    with pytest.raises(InvalidPlan, match=r"eq\. 5f"):
        make_plan(spec, cluster, threads=[[5] * 8] * 5)


def test_plans_are_deterministic() -> None:
    spec = get_spec("vgg16-paper")
    assert make_plan(spec, scenario("edge-1g", 4)) == make_plan(spec, scenario("edge-1g", 4))


def test_bad_requests() -> None:
    spec = get_spec("alexnet-paper")
    with pytest.raises(InvalidPlan, match="unknown split"):
        make_plan(spec, scenario("paper"), "magic")  # type: ignore[arg-type]


def test_zones_smaller_than_the_number_of_stages() -> None:
    spec = get_spec("vgg16-paper")  # 13 convs
    tiny = Cluster((Server("a", 4, 80e9, 1e9),), Cloud(1e11, 1e8))
    with pytest.raises(InvalidPlan, match="no server has a thread"):
        make_plan(spec, tiny, "paper")  # one sub-zone per conv needs 13 threads
    ours = make_plan(spec, tiny)
    assert len(ours.stages) <= 4
    _check_valid(ours, spec, tiny)
    # a small server hosts only the heaviest stages of the paper's plan, a big one all of them
    mixed = Cluster((Server("big", 20, 80e9, 1e9), Server("small", 4, 80e9, 1e9)), Cloud(1e11, 1e8))
    plan = make_plan(spec, mixed, "paper")
    _check_valid(plan, spec, mixed)
    assert sum(1 for st in plan.stages if 1 in st.servers) <= 4


def test_apportion() -> None:
    assert apportion([1, 1, 2], 8) == [2, 2, 4]
    assert apportion([0.01, 10, 10], 5) == [1, 2, 2]
    assert sum(apportion([3, 1, 4, 1, 5, 9, 2, 6], 20)) == 20
    assert apportion([0, 0], 3) in ([2, 1], [1, 2])


def test_stage_plan_slices() -> None:
    spec = get_spec("alexnet-paper")
    st = StagePlan(0, 2, "rows", (2, 5), (10, 15), (3, 3))
    assert [s.out_rows for s in st.slices(spec)] == [(0, 10), (10, 25)]


def _local(threads: int, cores: int | None, n: int = 2) -> Cluster:
    """n executors on loopback; on one host of ``cores`` cores, or on separate machines (None)."""
    host = {} if cores is None else {"host": "local", "host_cores": cores}
    return Cluster(tuple(Server(f"ex{m}", threads, 60e9, 1e10, overhead_s=3e-3, **host) for m in range(n)),
                   Cloud(2e11, 1e10, overhead_s=3e-3))


def test_host_slowdown_shares_the_cores_among_the_active_servers() -> None:
    from edgesplit.plan.latency import host_slowdown

    shared = _local(2, 2).servers
    assert host_slowdown(shared, [2, 2]) == [2.0, 2.0]
    assert host_slowdown(shared, [2, 2], [True, False]) == [1.0, 1.0]
    assert host_slowdown(shared, [1, 1]) == [1.0, 1.0]
    assert host_slowdown(_local(2, None).servers, [2, 2]) == [1.0, 1.0]


def test_co_hosted_stage_is_predicted_slower_than_on_separate_machines() -> None:
    from edgesplit.plan.latency import stage_latency

    spec = get_spec("alexnet-paper")
    stage = StagePlan(0, spec.n_edge, "rows", (0, 1), (3, 2), (2, 2))
    apart = stage_latency(spec, _local(2, None), stage)
    shared = stage_latency(spec, _local(2, 2), stage)
    assert shared.compute_s == pytest.approx(2 * apart.compute_s)
    assert shared.transfer_s == pytest.approx(apart.transfer_s)


def test_planner_packs_a_shared_host_instead_of_oversubscribing_it() -> None:
    """2 executors x 2 threads on 2 cores (the local stack): one executor with both cores beats two
    executors recomputing each other's halo at half speed; on separate machines both are used."""
    spec = get_spec("alexnet-paper")
    shared = make_plan(spec, _local(2, 2))
    apart = make_plan(spec, _local(2, None))
    assert all(st.servers == (0,) and st.threads == (2,) for st in shared.stages)
    assert any(len(st.servers) == 2 for st in apart.stages)
    # under the shared-host model, the packed plan beats the plan made for separate machines
    assert shared.predicted.edge_s < predict(spec, _local(2, 2), apart.stages).edge_s
    # zones that fit the cores together (1 thread each on 2 cores) are still both used
    assert any(len(st.servers) == 2 for st in make_plan(spec, _local(1, 2)).stages)
