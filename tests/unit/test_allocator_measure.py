"""What the allocator reads of measurements: executor metrics text, slice-record fits, the measured
cluster, quotas from plans and the order quota updates go in."""

from __future__ import annotations

import pytest
import torch
from prometheus_client import generate_latest

from edgesplit.models import get_spec
from edgesplit.plan.cluster import Cloud, Cluster, Server
from edgesplit.plan.planner import make_plan
from services.allocator.executors import (
    ExecutorRef,
    measured_cluster,
    plan_quotas,
    same_quotas,
    total,
    update_order,
)
from services.allocator.measure import (
    NO_STATS,
    ComputeFit,
    ExecutorSample,
    SliceStats,
    fit_line,
    fit_slices,
    relative_change,
)
from services.executor.metrics import ExecutorMetrics
from services.executor.pool import SliceRun, ZonePool


def test_reads_the_real_executor_metrics() -> None:
    pool = ZonePool(6, {"digits-cnn": 5})
    pool.set_quotas({"digits-cnn": {0: 2, 1: 3}})
    metrics = ExecutorMetrics(pool)
    out = torch.zeros(1)
    metrics.observe("digits-cnn", 0, SliceRun(out, 0.0, 0.01, 2, 4e6))  # 4e6 FLOPs over 0.02 worker-s
    from services.allocator.measure import parse_executor_metrics

    got = parse_executor_metrics(generate_latest(metrics.registry).decode())
    assert got["capacity"] == 6
    assert got["quotas"] == {"digits-cnn": {0: 2, 1: 3}}
    assert got["flops_per_thread"] == 4e6 / 0.02
    assert got["queued"] == 0 and got["busy"] == 0


def test_fit_recovers_rate_and_overhead() -> None:
    records = [{"bytes": b, "transfer_s": 1e-3 + 8 * b / 1e9, "flops": f, "workers": 2,
                "compute_s": 5e-4 + f / (2 * 4e9)}
               for b, f in zip(range(1000, 21000, 1000), range(10**6, 21 * 10**6, 10**6), strict=True)]
    stats = fit_slices(records)
    assert abs(stats.link_bps / 1e9 - 1) < 1e-9  # type: ignore[operator]
    assert abs(stats.overhead_s - 1e-3) < 1e-12  # type: ignore[operator]
    assert abs(stats.flops_per_thread / 4e9 - 1) < 1e-9  # type: ignore[operator]
    assert abs(stats.compute_overhead_s - 5e-4) < 1e-12  # type: ignore[operator]
    assert stats.samples == 20


def test_no_fit_without_a_slope() -> None:
    """Transfers all of one size say nothing of the rate: the nominal one stays. Compute times that
    do not grow with the work (a fixed delay) give the mean rate, no overhead."""
    stats = fit_slices([{"bytes": 1000.0, "transfer_s": 1e-3, "flops": f, "workers": 1.0, "compute_s": 0.05}
                        for f in (1e6, 2e6, 4e6) * 4])
    assert stats.link_bps is None and stats.overhead_s is None and stats.samples == 12
    assert abs(stats.flops_per_thread / (28e6 / 0.6) - 1) < 1e-9  # type: ignore[operator]
    assert stats.compute_overhead_s == 0.0
    assert fit_slices([]) == NO_STATS
    assert fit_line([(1.0, 2.0), (2.0, 1.0)]) is None  # too few points
    noisy = [(x, 1.0 + (0.5 if i % 2 else -0.5)) for i, x in enumerate(range(1, 21))]
    assert fit_line(noisy) is None  # y does not follow x


def test_compute_fit_from_executor_counters() -> None:
    fit = ComputeFit()
    key0, key1 = ("m", 0), ("m", 1)
    assert not fit.update("ex", {key0: (0.0, 0.0), key1: (0.0, 0.0)}, None)  # first look: no points
    count, total = {key0: 0.0, key1: 0.0}, {key0: 0.0, key1: 0.0}
    work = {key0: 1e6, key1: 8e6}
    for _ in range(6):
        for key, flops in work.items():
            count[key] += 3
            total[key] += 3 * (2e-3 + flops / 1e9)
        assert not fit.update("ex", {k: (count[k], total[k]) for k in work}, work)
    speed, overhead = fit.estimate("ex")  # type: ignore[misc]
    assert abs(speed / 1e9 - 1) < 1e-6 and abs(overhead - 2e-3) < 1e-9
    assert fit.update("ex", {key0: (1.0, 0.1), key1: (1.0, 0.1)}, work)  # counters went back: restarted
    assert fit.estimate("ex") is None


def test_relative_change() -> None:
    assert relative_change(100.0, 150.0) == 0.5
    assert relative_change(None, 1.0) == 0.0


def _refs(n: int = 3) -> list[ExecutorRef]:
    return [ExecutorRef(Server(f"ex{m}", 4, 80e9, 1e9, url=f"http://h{m}", overhead_s=1e-3))
            for m in range(n)]


def test_measured_cluster_uses_measurements_and_the_median_for_the_unmeasured() -> None:
    refs = _refs()
    samples = {"ex0": ExecutorSample("ex0", "http://h0", True, 1e8, capacity=2),
               "ex1": ExecutorSample("ex1", "http://h1", True, 3e8, capacity=8),
               "ex2": ExecutorSample("ex2", "http://h2", True, None, capacity=4)}
    stats = {"ex0": SliceStats(5e8, 2e-3, 30), "ex1": NO_STATS,
             "ex2": SliceStats(1e9, 1e-3, 30, flops_per_thread=5e8, compute_overhead_s=1e-4)}
    c = measured_cluster(refs, samples, stats, Cloud(1e10, 1e8), ["digits-cnn"])
    s0, s1, s2 = c.servers
    assert (s0.threads, s0.flops_per_thread, s0.link_bps, s0.overhead_s) == (2, 1e8, 5e8, 2e-3)
    assert (s1.threads, s1.flops_per_thread, s1.link_bps, s1.overhead_s) == (4, 3e8, 1e9, 1e-3)
    assert s2.flops_per_thread == 5e8  # the slice-record fit wins
    assert abs(s2.overhead_s - 1.1e-3) < 1e-12
    unmeasured = {**samples, "ex2": ExecutorSample("ex2", "http://h2", True, None)}
    c2 = measured_cluster(refs, unmeasured, {}, None, ["digits-cnn"])
    assert c2.servers[2].flops_per_thread == 2e8  # median of 1e8 and 3e8


def test_quotas_from_plans_and_their_order() -> None:
    spec = get_spec("digits-cnn")
    c = Cluster(tuple(r.server for r in _refs()), Cloud(1e10, 1e8), ("digits-cnn",))
    plan = make_plan(spec, c, threads=[[1, 3, 2], [3, 1, 2]], exclude={2})
    q = plan_quotas({"digits-cnn": plan}, ["ex0", "ex1", "ex2"])
    assert q["ex2"] == {}
    for k, st in enumerate(plan.stages):
        for m, t in zip(st.servers, st.threads, strict=True):
            assert q[f"ex{m}"]["digits-cnn"][k] == t
    current = {"ex0": {"m": {0: 3}}, "ex1": {"m": {0: 1}}, "ex2": {"m": {0: 2}}}
    desired = {"ex0": {"m": {0: 1}}, "ex1": {"m": {0: 4}}, "ex2": {"m": {0: 2}, "other": {}}}
    assert update_order(current, desired) == ["ex0", "ex1"]  # the shrinking one first; ex2 unchanged
    assert same_quotas({"m": {0: 2}, "x": {}}, {"m": {0: 2}})
    assert total(desired["ex1"]) == 4


def test_cluster_changes_name_what_moved() -> None:
    from dataclasses import replace

    from services.allocator.executors import cluster_changes

    old = Cluster(tuple(r.server for r in _refs()), Cloud(1e10, 1e8), ("digits-cnn",))
    assert cluster_changes(old, frozenset(), old, frozenset(), 0.2) == []
    s0, s1, s2 = old.servers
    new = replace(old, servers=(replace(s0, flops_per_thread=40e9), replace(s1, link_bps=1.1e9),
                                replace(s2, overhead_s=5e-3)))
    got = cluster_changes(old, frozenset({"ex1"}), new, frozenset({"ex2"}), 0.2)
    assert got == ["ex2 down", "ex1 back", "ex0 speed -50%"]  # ex1's link +10% is noise, ex2 is down
    fewer = replace(old, servers=(s0, s1))
    assert cluster_changes(old, frozenset(), fewer, frozenset(), 0.2) == ["executors changed"]
    slower = replace(old, servers=(s0, s1, replace(s2, overhead_s=5e-3)))
    assert cluster_changes(old, frozenset(), slower, frozenset(), 0.2) == ["ex2 overhead 1.0 -> 5.0 ms"]


def test_zone_budget_is_not_shrunk_by_our_own_resizes() -> None:
    from services.allocator.executors import zone_budget
    from services.allocator.kube import ExecutorPod

    ref = _refs(1)[0]  # 4 threads in the cluster file
    sample = ExecutorSample("ex0", "http://h0", True, capacity=2)
    assert zone_budget(ref, sample) == 2  # outside Kubernetes: at most the executor's capacity
    resized = ExecutorPod("ex0", "u", "10.0.0.1", True, cpu_limit=1.0, port=8101, budget=3.0)
    assert zone_budget(ExecutorRef(ref.server, resized), sample) == 3  # the pod's first limit, not 1 or 2
    unlimited = ExecutorPod("ex0", "u", "10.0.0.1", True, cpu_limit=None, port=8101, budget=None)
    assert zone_budget(ExecutorRef(ref.server, unlimited), sample) == 4


def test_a_new_speed_regime_replaces_the_old_window() -> None:
    """The newest records of a host slowed 4x are fitted on their own, not averaged into the window."""
    import pytest

    from services.allocator.measure import _work, current_regime, fit_slices

    def rec(speed: float, flops: float) -> dict[str, float]:
        return {"flops": flops, "compute_s": flops / speed, "workers": 1.0, "bytes": 1e5, "transfer_s": 1e-3}

    old = [rec(4e10, f) for f in (1e8, 2e8, 3e8) * 10]
    slowed = [rec(1e10, f) for f in (1e8, 2e8, 3e8, 1e8, 2e8)]
    assert len(current_regime(_work(slowed + old))) == 5
    assert fit_slices(slowed + old).flops_per_thread == pytest.approx(1e10, rel=1e-6)
    assert len(current_regime(_work(old))) == len(old)  # a steady host keeps its whole window
    assert fit_slices(old).flops_per_thread == pytest.approx(4e10, rel=1e-6)


def test_compute_fit_forgets_the_old_speed_when_a_host_slows_down() -> None:
    """A host whose quota drops 4x: its next points are off the old fit by far more than ``SHIFT``, so
    the estimate follows the new speed from the first measurement after the change, not after the
    window of 24 points has turned over."""
    fit = ComputeFit()
    keys = [("m", k) for k in range(4)]
    work = {key: (k + 1) * 2e6 for k, key in enumerate(keys)}
    count, total = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)
    fit.update("ex", {k: (0.0, 0.0) for k in keys}, None)

    def measure(speed: float) -> None:
        for key, flops in work.items():
            count[key] += 2
            total[key] += 2 * (1e-3 + flops / speed)
        fit.update("ex", {k: (count[k], total[k]) for k in keys}, work)

    for _ in range(5):
        measure(4e9)
    assert abs(fit.estimate("ex")[0] / 4e9 - 1) < 1e-6  # type: ignore[index]
    measure(1e9)  # one measurement of the slowed host: its 4 points replace the 20 older ones
    speed, _ = fit.estimate("ex")  # type: ignore[misc]
    # too few points for a line: the mean rate, the per-slice overhead folded in
    assert speed == pytest.approx(sum(work.values()) / sum(1e-3 + f / 1e9 for f in work.values()))
    measure(1e9)
    speed, overhead = fit.estimate("ex")  # type: ignore[misc]
    assert speed == pytest.approx(1e9) and overhead == pytest.approx(1e-3)
    for _ in range(2):  # a steady host keeps adding to its window
        measure(1e9)
    assert len(fit._points["ex"]) == 16
