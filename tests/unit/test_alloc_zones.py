"""Resource zones (section 3.2 step 1): FLOPs shares, largest remainder, minimums, errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesplit.alloc.zones import apportion_min, zones
from edgesplit.errors import InvalidPlan
from edgesplit.models import get_spec
from edgesplit.plan.cluster import scenario


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=5), st.data())
def test_zones_sum_to_the_threads_and_respect_minimums(weights: list[float], data: st.DataObject) -> None:
    minimums = data.draw(st.lists(st.integers(1, 6), min_size=len(weights), max_size=len(weights)))
    total = data.draw(st.integers(sum(minimums), sum(minimums) + 40))
    out = apportion_min(weights, total, minimums)
    assert sum(out) == total
    assert all(z >= m for z, m in zip(out, minimums, strict=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(0.01, 1e6), min_size=1, max_size=5), st.integers(5, 200))
def test_without_binding_minimums_it_is_largest_remainder(weights: list[float], total: int) -> None:
    quota = [total * w / sum(weights) for w in weights]
    out = apportion_min(weights, total, [0] * len(weights))
    assert all(math.floor(q) <= z <= math.ceil(q) for q, z in zip(quota, out, strict=True))
    # largest remainder: whoever got the extra thread had a remainder at least as large as who did not
    got = [q - math.floor(q) for q, z in zip(quota, out, strict=True) if z > math.floor(q)]
    missed = [q - math.floor(q) for q, z in zip(quota, out, strict=True) if z == math.floor(q) and q > z]
    assert not got or not missed or min(got) >= max(missed) - 1e-9


def test_paper_models_share_a_server_by_flops() -> None:
    cluster = scenario("paper")
    out = zones(cluster, ["alexnet-paper", "vgg16-paper"])
    alex, vgg = get_spec("alexnet-paper"), get_spec("vgg16-paper")
    share = alex.edge_flops() / (alex.edge_flops() + vgg.edge_flops())
    assert 20 * share < 5  # alexnet's FLOPs share is under 5 of 20 threads: its minimum (5 convs) binds
    assert out["alexnet-paper"] == (5,) * 8 and out["vgg16-paper"] == (15,) * 8


def test_a_server_too_small_for_the_convs_is_a_clear_error() -> None:
    cluster = scenario("paper")
    with pytest.raises(InvalidPlan, match=r"ex0: 12 threads cannot give .* \(5 \+ 13 = 18\)"):
        zones(type(cluster)(tuple(s.__class__(s.name, 12, s.flops_per_thread, s.link_bps)
                                  for s in cluster.servers), cluster.cloud), ["alexnet-paper", "vgg16-paper"])


def test_one_zone_rule_for_the_orchestrator_the_allocator_and_the_simulator() -> None:
    """They disagreed: the orchestrator split 8 threads between alexnet-paper and digits-cnn as [7, 1],
    the allocator as [6, 2] (a thread per conv, eq. 5d); on 6 threads the allocator overlapped the
    zones ([6, 6]) where the orchestrator gave [5, 1]. The paper's rule wins where it fits, else one
    thread per model, else (fewer threads than models) overlapping zones."""
    from edgesplit.alloc.zones import server_zones, zone_clusters
    from edgesplit.plan.cluster import Cloud, Cluster, Server
    from edgesplit.sim.run import zone_clusters as sim_zones
    from services.allocator.zones import zone_clusters as allocator_zones
    from services.orchestrator.plans import model_zones

    specs = [get_spec("alexnet-paper"), get_spec("digits-cnn")]
    assert server_zones(specs, 8) == [6, 2]
    assert server_zones(specs, 6) == [5, 1]
    assert server_zones(specs, 1) == [1, 1]
    for threads, expected in ((8, [6, 2]), (6, [5, 1])):
        cluster = Cluster(tuple(Server(f"ex{m}", threads, 80e9, 1e9) for m in range(2)), Cloud(1e11, 1e8))
        by_name = {s.name: s for s in specs}
        views = [zone_clusters(cluster, specs), model_zones(cluster, by_name),
                 allocator_zones(cluster, by_name), sim_zones(cluster, specs)]
        for view in views:
            assert [view[s.name].servers[1].threads for s in specs] == expected
