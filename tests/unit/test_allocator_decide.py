"""The allocator's decision for one model: policy, check against the exact allocator, plan, hysteresis."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgesplit.alloc.cost import build_problem
from edgesplit.alloc.exact import best_allocation
from edgesplit.models import get_spec
from edgesplit.plan.cluster import Cloud, Cluster, Server, dump_cluster
from services.allocator.decide import Decider, expand, still_good, units_per_server

SPEC = get_spec("digits-cnn")


def cluster(speeds: tuple[float, ...] = (1e9, 1e9, 1e9), threads: int = 4) -> Cluster:
    servers = tuple(Server(f"ex{m}", threads, f, 1e9, overhead_s=2e-4) for m, f in enumerate(speeds))
    return Cluster(servers, Cloud(1e10, 1e9), ("digits-cnn",))


@pytest.fixture(scope="module")
def td3_policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny extended-observation TD3 policy for 3 servers x 4 threads (a few hundred steps: it need
    not be good, only real)."""
    import torch

    from edgesplit.alloc.train import TrainConfig, train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("td3")
    dump_cluster(cluster(), out / "cluster.yaml")
    config = TrainConfig(model="digits-cnn", scenario=str(out / "cluster.yaml"), obs="extended", steps=150,
                         learning_starts=100, net_arch=(8,), batch_size=16)
    train(config, out / "policy", evaluate_policy=False)
    yield out / "policy"


def test_exact_policy_serves_the_exact_allocators_optimum() -> None:
    c = cluster((1e9, 2e9, 0.5e9))
    d = Decider("exact").decide(SPEC, c)
    problem = build_problem(SPEC, c.servers)
    best = best_allocation(problem, "sum")
    assert d.served == "exact"
    assert d.exact_s == pytest.approx(best.value)
    assert d.lower_bound_s == pytest.approx(best.lower_bound)
    assert d.bound_gap is not None and d.bound_gap >= -1e-9
    table = [[st.threads[st.servers.index(m)] if m in st.servers else None for m in range(3)]
             for st in d.plan.stages]
    for g, row in enumerate(table):  # the plan runs the exact allocation's threads where it uses a server
        for m, k in enumerate(row):
            assert k is None or k == best.alloc[m, g]


def test_even_policy_splits_each_zone_evenly() -> None:
    d = Decider("even").decide(SPEC, cluster())
    assert d.served == "even"
    assert all(k == 2 for st in d.plan.stages for k in st.threads)


def test_any_registered_policy_is_served_and_an_unknown_one_refused() -> None:
    from edgesplit.alloc.exact import flops_share_allocation
    from edgesplit.errors import InvalidInput

    c = cluster((1e9, 2e9, 0.5e9))
    d = Decider("flops-share").decide(SPEC, c)
    assert d.served == "flops-share" and d.exact_s is None
    want = flops_share_allocation(build_problem(SPEC, c.servers))
    for g, st in enumerate(d.plan.stages):  # the plan runs the FLOPs-share threads where it uses a server
        assert list(st.threads) == want[list(st.servers), g].tolist()
    with pytest.raises(InvalidInput, match="unknown policy 'greedy'"):
        Decider("greedy")


def test_servers_down_get_no_units() -> None:
    d = Decider("exact").decide(SPEC, cluster(), down={1})
    assert all(1 not in st.servers for st in d.plan.stages)
    assert units_per_server(d.plan)["ex1"] == 0
    assert sum(units_per_server(d.plan).values()) > 0


def test_all_down_is_an_error() -> None:
    from edgesplit.errors import InvalidPlan

    with pytest.raises(InvalidPlan, match="all 3 executors are down"):
        Decider("exact").decide(SPEC, cluster(), down={0, 1, 2})


def test_a_much_slower_server_gets_fewer_units() -> None:
    even = units_per_server(Decider("exact").decide(SPEC, cluster()).plan)
    slow = units_per_server(Decider("exact").decide(SPEC, cluster((1e9, 1e7, 1e9))).plan)
    assert slow["ex1"] < even["ex1"]


def test_zone_smaller_than_the_convs_falls_back_to_the_planner() -> None:
    d = Decider("td3").decide(get_spec("alexnet-paper"), cluster(threads=2))
    assert d.served == "planner"
    assert "smaller than the 5 convs" in d.note


def test_td3_without_a_policy_serves_exact_and_says_why() -> None:
    d = Decider("td3").decide(SPEC, cluster())
    assert d.served == "exact"
    assert "TD3 not served" in d.note and d.td3_s is None


@pytest.mark.parametrize("margin", [0.0, 100.0])
def test_td3_is_served_only_within_the_margin_of_exact(td3_policy: Path, margin: float) -> None:
    d = Decider("td3", margin=margin, policy_file=td3_policy).decide(SPEC, cluster((1e9, 0.6e9, 1e9)))
    assert d.td3_s is not None and d.exact_s is not None
    assert d.td3_s >= d.exact_s * (1 - 1e-9)  # the exact allocator is at least as good
    within = d.td3_s <= d.exact_s * (1 + margin)
    assert d.served == ("td3" if within else "exact")
    if margin == 100.0:
        assert d.served == "td3"
        assert d.objective_s == d.td3_s


def test_td3_for_another_cluster_shape_falls_back(td3_policy: Path) -> None:
    d = Decider("td3", policy_file=td3_policy).decide(SPEC, cluster((1e9, 1e9)))
    assert d.served == "exact"
    assert "3 servers" in d.note


def test_expand_fills_left_out_servers_evenly() -> None:
    table = expand(np.array([[1, 3], [2, 2]]), [0, 2], [4, 5, 4], 2)
    assert table == [[1, 3, 2], [3, 2, 2]]


def test_hysteresis_keeps_a_plan_that_is_good_enough() -> None:
    c = cluster()
    current = Decider("exact").decide(SPEC, c).plan
    assert still_good(SPEC, c, current, current, set(), "sum", 0.05)
    # a server of the current plan went down: it must be replaced
    used = current.stages[0].servers[0]
    assert not still_good(SPEC, c, current, current, {used}, "sum", 0.05)
    # much slower conditions for a server it uses: the new plan is clearly better
    slow = replace(c, servers=tuple(replace(s, flops_per_thread=1e6) if m == used else s
                                    for m, s in enumerate(c.servers)))
    new = Decider("exact").decide(SPEC, slow).plan
    assert not still_good(SPEC, slow, current, new, set(), "sum", 0.05)
    assert not still_good(SPEC, c, None, current, set(), "sum", 0.05)
