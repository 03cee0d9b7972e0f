"""Routes the orchestrator gives queued tasks: plans as steps, re-planning around a failed executor,
resource zones per model. Exactness of every route against the unsplit model, no network."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.errors import InvalidPlan, Unavailable
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from edgesplit.plan.cluster import Cloud, Cluster, Server
from edgesplit.plan.modes import whole_stage
from edgesplit.plan.planner import Plan, StagePlan, make_plan
from edgesplit.split import compute_slice, crop_input, merge
from services.orchestrator.plans import model_zones
from services.orchestrator.routes import (
    Route,
    Step,
    owned_quotas,
    proportional_parts,
    replacement,
    route_from_plan,
    rows_step,
)

SPEC = get_spec("digits-cnn")
MODULE = load_model(SPEC, seed=0)


def _cluster(n: int, threads: int = 2) -> Cluster:
    return Cluster(tuple(Server(f"ex{i}", threads, 80e9, 10e9) for i in range(n)), Cloud(1e11, 1e9))


@torch.no_grad()
def _run(route: Route, x: torch.Tensor) -> torch.Tensor:
    for step in route.steps:
        slices = step.slices(SPEC)
        outs = [compute_slice(MODULE, SPEC, sl, crop_input(x, sl)) for sl in slices]
        x = merge(MODULE, SPEC, slices, outs)
    return x


@given(st.integers(0, 500), st.lists(st.floats(0.1, 10), min_size=1, max_size=6))
def test_proportional_parts_sum_and_follow_the_weights(total: int, weights: list[float]) -> None:
    parts = proportional_parts(total, weights)
    assert sum(parts) == total and min(parts) >= 0
    exact = [total * w / sum(weights) for w in weights]
    assert all(abs(p - e) < 1 for p, e in zip(parts, exact, strict=True))


def test_proportional_parts_refuse_no_weight() -> None:
    with pytest.raises(InvalidPlan):
        proportional_parts(4, [])


@pytest.mark.parametrize("split", ["edgesplit", "paper"])
def test_route_from_a_plan_is_exact(split: str) -> None:
    route = route_from_plan(make_plan(SPEC, _cluster(3), split), SPEC, "static")  # type: ignore[arg-type]
    x = torch.randn(1, *SPEC.input, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(_run(route, x), MODULE[: SPEC.n_edge](x))
    assert route.cloud_from == SPEC.n_edge and route.uses() <= {0, 1, 2}


def test_route_must_cover_the_edge_layers() -> None:
    plan = make_plan(SPEC, _cluster(2), "paper")
    broken = type(plan)(plan.model, plan.stages[:1], plan.predicted)
    with pytest.raises(InvalidPlan, match="consecutive ranges"):
        route_from_plan(broken, SPEC, "redis")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3), st.integers(1, 4), st.lists(st.integers(1, 4), min_size=4, max_size=4))
def test_replacement_step_is_exact_without_the_failed_executor(failed: int, n_up: int,
                                                               threads: list[int]) -> None:
    plan = make_plan(SPEC, _cluster(4), "paper")
    route = route_from_plan(plan, SPEC, "static")
    up = [m for m in range(4) if m != failed][:n_up]
    x = torch.randn(1, *SPEC.input, generator=torch.Generator().manual_seed(1))
    steps = tuple(replacement(None, SPEC, step, up, threads) if failed in step.servers else step
                  for step in route.steps)
    assert all(failed not in s.servers for s in steps)
    torch.testing.assert_close(_run(Route(steps, SPEC.n_edge), x), MODULE[: SPEC.n_edge](x))


def test_replacement_prefers_the_fresh_plans_stage_for_the_same_layers() -> None:
    fresh = route_from_plan(make_plan(SPEC, _cluster(3), "paper", exclude={1}), SPEC, "replan")
    failed = Step(0, 2, "rows", (0, 1), (4, 4), (2, 2))
    assert replacement(fresh, SPEC, failed, [0, 2], [2, 2, 2]) == fresh.steps[0]
    other = replacement(fresh, SPEC, Step(0, 5, "rows", (1,), (4,), (2,)), [0, 2], [2, 2, 2])
    assert other.start == 0 and other.stop == 5 and set(other.servers) <= {0, 2}


def test_no_executor_up_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        rows_step(SPEC, 0, 5, [], [])


def test_whole_step_is_one_rows_slice_of_all_rows() -> None:
    step = whole_stage(SPEC, SPEC.n_edge, 1, 4)
    x = torch.randn(1, *SPEC.input, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(_run(Route((step,), SPEC.n_edge), x), MODULE[: SPEC.n_edge](x))


def test_model_zones_split_threads_by_edge_flops() -> None:
    specs = {"alexnet-paper": get_spec("alexnet-paper"), "digits-cnn": SPEC}
    zones = model_zones(_cluster(2, threads=8), specs)
    for m in range(2):
        a, d = (zones[n].servers[m].threads for n in specs)
        assert a + d == 8 and a > d >= 1
    assert model_zones(_cluster(2), {"digits-cnn": SPEC})["digits-cnn"] == _cluster(2)


def test_a_route_step_is_a_planner_stage_with_one_serialisation() -> None:
    plan = make_plan(SPEC, _cluster(3), "paper")
    route = route_from_plan(plan, SPEC, "static")
    assert Step is StagePlan and route.steps == plan.stages  # the paper's plan uses every server
    for step, raw in zip(route.steps, plan.to_dict()["stages"], strict=True):
        assert step.to_dict() == raw and raw["layers"] == [raw["start"], raw["stop"]]
        assert StagePlan.from_dict(raw) == step
        assert StagePlan.from_dict({k: v for k, v in raw.items() if k not in ("start", "stop")}) == step


def test_the_orchestrator_and_the_allocator_turn_plans_into_the_same_quotas() -> None:
    from services.allocator.executors import plan_quotas

    names = ["ex0", "ex1", "ex2"]
    plan = make_plan(SPEC, _cluster(3), "paper")
    ours = owned_quotas({SPEC.name: route_from_plan(plan, SPEC, "static")}, [0, 1, 2])
    assert {names[m]: q for m, q in ours.items()} == plan_quotas({SPEC.name: plan}, names)
    assert owned_quotas({SPEC.name: route_from_plan(plan, SPEC, "redis")}, [0, 1, 2]) == {0: {}, 1: {}, 2: {}}
    assert set(owned_quotas({SPEC.name: route_from_plan(plan, SPEC, "static")}, [0, 2])) == {0, 2}
    assert isinstance(Plan.from_dict(plan.to_dict()), Plan)
