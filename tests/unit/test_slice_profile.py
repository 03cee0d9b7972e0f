"""Slice efficiency profiles: measured on a real model with torch, read back from a cluster file, and
priced alike by the latency model (eq. 1 times the factor) and the planner's search."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from edgesplit.plan.cluster import Cloud, Cluster, Server, cluster_from_dict, cluster_to_dict
from edgesplit.plan.latency import predict, server_times
from edgesplit.plan.planner import make_plan
from edgesplit.plan.search import SpecFacts, cut_points, unit_loads
from edgesplit.profiles import GroupProfile, SliceProfile
from edgesplit.split import STRATEGIES, part_total
from edgesplit.split.profile import measure_profile, unit_grid

SPEC = get_spec("alexnet-paper")


def _cluster(n: int = 4, profile: SliceProfile | None = None) -> Cluster:
    servers = tuple(Server(f"executor-{i}", 4, 60e9, 1e9, overhead_s=2e-3) for i in range(n))
    return Cluster(servers, Cloud(8e9, 100e6, overhead_s=3e-3), ("alexnet-paper",), 5e-3,
                   (profile,) if profile else ())


def _thin_rows_cost(factor: float) -> SliceProfile:
    """Every rows slice of one unit costs ``factor`` times eq. (1), falling to 1 at 8 units."""
    points = cut_points(SPEC)
    groups = tuple(GroupProfile(points[i], points[j], "rows", (1, 8), (factor, 1.0))
                   for j in range(len(points)) for i in range(j))
    return SliceProfile(SPEC.name, groups)


def test_measured_profile_covers_every_group_and_strategy() -> None:
    spec = get_spec("digits-cnn")
    points = cut_points(spec)
    groups = [(points[i], points[j]) for j in range(len(points)) for i in range(j)]
    seen: list[tuple[int, int]] = []
    profile = measure_profile(spec, load_model(spec, seed=0), groups, STRATEGIES, reps=1, points=4,
                              progress=lambda done, total: seen.append((done, total)))
    assert profile.model == "digits-cnn" and profile.groups
    assert seen[-1][0] == seen[-1][1] == len(profile.groups)
    assert {(g.start, g.stop) for g in profile.groups} == set(groups)
    for g in profile.groups:
        total = part_total(spec, g.start, g.stop, g.strategy)
        assert g.units == tuple(unit_grid(total, 4)) and g.units[-1] == total
        assert min(g.efficiency) > 0
    again = SliceProfile.from_dict(profile.model, profile.to_dict())
    assert [(g.start, g.stop, g.strategy, g.units) for g in again.groups] == \
        [(g.start, g.stop, g.strategy, g.units) for g in profile.groups]


def test_interpolation_in_log_units_and_defaults() -> None:
    g = GroupProfile(0, 2, "rows", (1, 4, 16), (8.0, 2.0, 1.0))
    assert list(g.at(np.array([1, 4, 16]))) == [8.0, 2.0, 1.0]
    assert g.at(np.array([2]))[0] == pytest.approx(5.0)  # halfway between 1 and 4 in log n
    assert g.at(np.array([100]))[0] == 1.0  # beyond the last point: its value
    p = SliceProfile("m", (g,))
    assert p.factor(0, 2, "rows", 2) == pytest.approx(5.0)
    assert p.factor(0, 2, "channels", 2) == 1.0 and p.factor(2, 4, "rows", 2) == 1.0  # not profiled
    third = 8.0 - 6.0 * np.log(3) / np.log(4)
    assert list(p.factors(0, 2, "rows", 4)) == pytest.approx([1.0, 8.0, 5.0, third, 2.0])
    assert unit_grid(5) == [1, 2, 3, 4, 5] and unit_grid(256, 10)[0] == 1 and unit_grid(256, 10)[-1] == 256
    for bad in ({"units": (2, 1), "efficiency": (1.0, 1.0)}, {"units": (1,), "efficiency": (0.0,)},
                {"units": (1, 2), "efficiency": (1.0,)}):
        with pytest.raises(InvalidInput):
            GroupProfile(0, 2, "rows", **bad)  # type: ignore[arg-type]


def test_latency_model_and_search_price_a_slice_by_its_factor() -> None:
    profile = _thin_rows_cost(10.0)
    plain, costly = _cluster(4), _cluster(4, profile)
    plan = make_plan(SPEC, plain, groups=[(0, 2), (2, 10)])
    for st in plan.stages:
        base, scaled = server_times(SPEC, plain, st), server_times(SPEC, costly, st)
        for n, a, b in zip(st.parts, base, scaled, strict=True):
            factor = profile.factor(st.start, st.stop, st.strategy, n)
            assert b.compute_s == pytest.approx(factor * a.compute_s)
            assert (b.transfer_s, b.overhead_s) == (a.transfer_s, a.overhead_s)
    assert any(profile.factor(st.start, st.stop, st.strategy, n) > 1 for st in plan.stages for n in st.parts)
    loads = unit_loads(SpecFacts.of(SPEC), 0, 2, "rows")
    priced = unit_loads(SpecFacts.of(SPEC, profile), 0, 2, "rows")
    assert priced.flops[1] == pytest.approx(10.0 * loads.flops[1])
    assert priced.flops[8] == pytest.approx(loads.flops[8])
    assert list(priced.in_bytes) == list(loads.in_bytes)


def test_planner_avoids_slices_the_profile_says_are_slow() -> None:
    """With one-unit rows slices 50x dearer, the plan's prediction includes it and the planner moves
    away from them: its predicted latency beats the profile-blind plan priced with the profile."""
    plain, costly = _cluster(8), _cluster(8, _thin_rows_cost(50.0))
    blind = make_plan(SPEC, plain)
    aware = make_plan(SPEC, costly)
    assert aware.predicted.total_s <= predict(SPEC, costly, blind.stages).total_s + 1e-12
    assert aware.predicted.total_s == pytest.approx(predict(SPEC, costly, aware.stages).total_s)


def test_cluster_file_carries_profiles() -> None:
    cluster = _cluster(2, _thin_rows_cost(3.0))
    again = cluster_from_dict(cluster_to_dict(cluster))
    assert again.profile("alexnet-paper") == cluster.profile("alexnet-paper")
    assert again.take(1).profile("alexnet-paper") is not None and again.profile("vgg16-paper") is None
    raw = cluster_to_dict(cluster)
    raw["profiles"]["alexnet-paper"]["groups"][0]["efficiency"] = [1.0]
    with pytest.raises(InvalidInput, match="one length"):
        cluster_from_dict(raw)
    assert replace(cluster, profiles=()).profile("alexnet-paper") is None
