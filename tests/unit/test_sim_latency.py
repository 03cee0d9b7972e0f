"""The simulator agrees with the planner's analytic latency model (eq. 1-5) for a single task."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesplit.models.zoo import get_spec
from edgesplit.plan.cluster import Cloud, Cluster, Server, scenario
from edgesplit.plan.latency import predict
from edgesplit.plan.planner import StagePlan, make_plan
from edgesplit.sim.baselines import MODES, build
from edgesplit.sim.engine import SimConfig, simulate
from edgesplit.sim.records import make_tasks
from edgesplit.sim.workload import pipeline
from edgesplit.split import conv_groups, part_total
from edgesplit.split.slices import check_group

MODELS = ("digits-cnn", "alexnet-paper", "vgg16-paper")


@st.composite
def clusters(draw: st.DrawFn, min_threads: int = 1) -> Cluster:
    n = draw(st.integers(1, 4))
    servers = tuple(Server(f"s{m}", draw(st.integers(min_threads, min_threads + 8)),
                           draw(st.floats(1e9, 1e11)), draw(st.floats(1e6, 1e12)),
                           overhead_s=draw(st.floats(0.0, 1e-3))) for m in range(n))
    return Cluster(servers, Cloud(draw(st.floats(1e9, 1e12)), draw(st.floats(1e6, 1e9)),
                                  overhead_s=draw(st.floats(0.0, 1e-3))))


def _valid(spec_name: str, a: int, b: int) -> list[str]:
    out = []
    for strategy in ("rows", "kernel-rows", "channels"):
        try:
            check_group(get_spec(spec_name), a, b, strategy)  # type: ignore[arg-type]
        except Exception:
            continue
        out.append(strategy)
    return out


@st.composite
def random_plans(draw: st.DrawFn) -> tuple[str, Cluster, list[StagePlan]]:
    """Any valid plan: one conv per group, a random strategy, random parts and threads per server."""
    name = draw(st.sampled_from(MODELS))
    spec = get_spec(name)
    cluster = draw(clusters())
    n = len(cluster.servers)
    stages = []
    for a, b in conv_groups(spec):
        strategy = draw(st.sampled_from(_valid(name, a, b)))
        total = part_total(spec, a, b, strategy)  # type: ignore[arg-type]
        cuts = sorted(draw(st.lists(st.integers(0, total), min_size=n - 1, max_size=n - 1)))
        parts = [hi - lo for lo, hi in zip([0, *cuts], [*cuts, total], strict=True)]
        used = [m for m in range(n) if parts[m] > 0]
        threads = [draw(st.integers(1, cluster.servers[m].threads)) for m in used]
        stages.append(StagePlan(a, b, strategy, tuple(used), tuple(parts[m] for m in used),  # type: ignore[arg-type]
                                tuple(threads)))
    return name, cluster, stages


def one_task_s(workload: object, mode: str = "async") -> float:
    res = simulate({workload.model: workload}, make_tasks(workload.model, 1),  # type: ignore[attr-defined]
                   SimConfig(pipeline=mode))  # type: ignore[arg-type]
    return res.tasks[0].latency_s


@given(random_plans(), st.sampled_from(["async", "lockstep"]))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_one_task_takes_what_the_latency_model_predicts(case: tuple[str, Cluster, list[StagePlan]],
                                                        mode: str) -> None:
    name, cluster, stages = case
    spec = get_spec(name)
    predicted = predict(spec, cluster, stages)
    wl = pipeline(spec, cluster, stages)
    assert one_task_s(wl, mode) == pytest.approx(predicted.total_s, rel=1e-9, abs=1e-15)
    res = simulate({name: wl}, make_tasks(name, 1), SimConfig(pipeline=mode))  # type: ignore[arg-type]
    for rec, pred in zip(res.tasks[0].stages, predicted.stages, strict=True):
        assert rec.end_s - rec.start_s == pytest.approx(pred.total_s, rel=1e-9, abs=1e-15)
    cloud = res.tasks[0].cloud
    assert cloud is not None
    assert cloud.transfer_s == pytest.approx(predicted.cloud_transfer_s, rel=1e-12)


@given(clusters(min_threads=13), st.sampled_from(MODES), st.sampled_from(MODELS), st.integers(1, 8))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_method_simulates_to_its_prediction(cluster: Cluster, mode: str, name: str,
                                                  threads: int) -> None:
    # zones of >= 13 threads: a sub-zone for each of VGG-16's 13 convs (eq. 5d)
    method = build(get_spec(name), cluster, mode, threads, allocate=False)  # type: ignore[arg-type]
    assert one_task_s(method.workload, method.pipeline) == pytest.approx(method.predicted_s, rel=1e-9)


def test_paper_scenario_numbers() -> None:
    """No Split of alexnet-paper on one thread is within 5% of the paper's 38 ms, DADS near its 17 ms."""
    cluster = scenario("paper", 0)
    spec = get_spec("alexnet-paper")
    no_split = one_task_s(build(spec, cluster, "no-split", 1).workload)
    dads = one_task_s(build(spec, cluster, "dads", 1).workload)
    assert abs(no_split - 38e-3) / 38e-3 < 0.05
    assert abs(dads - 17e-3) / 17e-3 < 0.05


@pytest.mark.parametrize("name", ["alexnet-paper", "vgg16-paper"])
def test_ours_is_never_worse_than_the_papers_method_and_2x_better_on_1g(name: str) -> None:
    spec = get_spec(name)
    for scen, factor in (("paper", 1.0), ("edge-1g", 2.0)):
        cluster = scenario(scen, 0)
        paper = build(spec, cluster, "ours-paper")
        ours = build(spec, cluster, "ours")
        assert one_task_s(ours.workload, ours.pipeline) * factor <= one_task_s(paper.workload, paper.pipeline)
        n = 30
        batch = [simulate({name: m.workload}, make_tasks(name, n), SimConfig(pipeline=m.pipeline))
                 for m in (paper, ours)]
        assert batch[1].makespan_s() <= batch[0].makespan_s() * (1 + 1e-9)


def test_plans_from_the_planner_simulate_to_the_plans_prediction() -> None:
    for scen in ("paper", "edge-1g"):
        cluster = scenario(scen, 3)
        for name in ("alexnet-paper", "vgg16-paper"):
            for split in ("paper", "edgesplit"):
                plan = make_plan(get_spec(name), cluster, split)  # type: ignore[arg-type]
                wl = pipeline(get_spec(name), cluster, plan.stages)
                assert one_task_s(wl) == pytest.approx(plan.predicted.total_s, rel=1e-9)
