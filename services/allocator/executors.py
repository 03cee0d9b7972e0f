"""The executors the allocator manages, the cluster it plans on, and how their quotas change.

Executors come from the cluster file (its order is the server index of every plan, shared with the
orchestrator), or, in Kubernetes mode without a cluster file, from the executor pods by name. With
both, a server of the file is the pod of the same name (the Helm chart's StatefulSet pods).

The measured cluster keeps each server's threads (its zone budget: the file's threads, at most the
executor's capacity) and replaces its speed and link by the measurements: a server not yet measured
is assumed as fast as the median of those measured (else the file's value), so one fresh executor
does not look 80x faster or slower than the others.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from edgesplit.plan.cluster import (
    DEFAULT_FLOPS_PER_THREAD,
    DEFAULT_LINK_BPS,
    PAPER_CLOUD_FLOPS,
    Cloud,
    Cluster,
    Server,
)
from edgesplit.plan.planner import Plan
from edgesplit.plan.quotas import plan_quotas as stage_quotas
from edgesplit.type_aliases import Quotas
from services.allocator.kube import ExecutorPod
from services.allocator.measure import ExecutorSample, SliceStats, relative_change


@dataclass(frozen=True)
class ExecutorRef:
    """One managed executor: the planner's view of it (nominal values) and its pod in Kubernetes mode."""

    server: Server
    pod: ExecutorPod | None = None

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def url(self) -> str | None:
        if self.server.url:
            return self.server.url
        return self.pod.url if self.pod is not None else None


def executor_refs(base: Cluster | None, pods: Sequence[ExecutorPod] | None,
                  default_threads: int) -> list[ExecutorRef]:
    """The executors to manage (module docstring); ``pods`` None outside Kubernetes."""
    if base is not None:
        by_name = {p.name: p for p in pods or ()}
        return [ExecutorRef(s, by_name.get(s.name)) for s in base.servers]
    refs = []
    for p in pods or ():
        threads = max(1, round(p.budget)) if p.budget else default_threads
        refs.append(ExecutorRef(Server(p.name, threads, DEFAULT_FLOPS_PER_THREAD, DEFAULT_LINK_BPS,
                                       flops_known=False), p))
    return refs


def is_up(ref: ExecutorRef, sample: ExecutorSample | None, kubernetes: bool) -> bool:
    """Up: its pod (Kubernetes mode) is ready and it answered the last measurement."""
    if kubernetes and (ref.pod is None or not ref.pod.ready):
        return False
    return sample is not None and sample.up


def zone_budget(ref: ExecutorRef, sample: ExecutorSample | None) -> int:
    """Threads an executor may be planned with: its nominal threads, at most its capacity. In
    Kubernetes mode the capacity follows the pod's CPU limit, which the allocator itself resizes, so
    the pod's limit when first seen (its budget) bounds it instead: a shrink is not permanent."""
    nominal = ref.server.threads
    if ref.pod is not None:
        return max(1, min(nominal, round(ref.pod.budget)) if ref.pod.budget else nominal)
    return max(1, min(nominal, sample.capacity) if sample is not None and sample.capacity else nominal)


Fit = tuple[float, float]  # (FLOPS per thread, per-slice compute overhead in seconds)


def measured_compute(sample: ExecutorSample | None, stats: SliceStats | None,
                     fit: Fit | None) -> tuple[float | None, float]:
    """FLOPS per thread and per-slice compute overhead (s), best source first: the fit of the
    orchestrator's slice records, the fit of the executor's compute histograms, the executor's own
    FLOPS figure (no overhead), nothing."""
    if stats is not None and stats.flops_per_thread:
        return stats.flops_per_thread, stats.compute_overhead_s or 0.0
    if fit is not None:
        return fit
    return (sample.flops_per_thread if sample is not None and sample.flops_per_thread else None), 0.0


def nominal_speed(measured: float | None, server: Server, threads: int) -> float | None:
    """A measured FLOPS per worker as the cluster file's ``flops_per_thread``: on a host with fewer cores
    than the zone's threads (a fractional CPU quota: a testbed host, a pod limited below a core) the
    workers measured already ran at ``cores / threads`` of a core, and the planner applies that
    slowdown itself (``latency.host_slowdown``), so it is taken back out here."""
    if measured is None or not server.host_cores:
        return measured
    return measured * max(1.0, threads / server.host_cores)


def measured_cluster(refs: Sequence[ExecutorRef], samples: Mapping[str, ExecutorSample],
                     stats: Mapping[str, SliceStats], cloud: Cloud | None, models: Sequence[str],
                     fits: Mapping[str, Fit] | None = None) -> Cluster:
    """The cluster to plan on: nominal threads, measured speed, link and overheads (module docstring)."""
    fits = fits or {}
    compute = {r.name: measured_compute(samples.get(r.name), stats.get(r.name), fits.get(r.name))
               for r in refs}
    speeds = [compute[r.name][0] for r in refs if compute[r.name][0] and samples.get(r.name)
              and samples[r.name].up]
    typical = statistics.median(speeds) if speeds else None  # type: ignore[type-var]
    servers = []
    for ref in refs:
        s, sample, st = ref.server, samples.get(ref.name), stats.get(ref.name)
        threads = zone_budget(ref, sample)
        speed, compute_overhead = compute[ref.name]
        flops = nominal_speed(speed or typical, s, threads) or s.flops_per_thread
        link, overhead = s.link_bps, s.overhead_s
        if st is not None:
            link = st.link_bps or link
            overhead = overhead if st.overhead_s is None else st.overhead_s
        overhead += compute_overhead
        servers.append(replace(s, threads=threads, flops_per_thread=flops, url=ref.url, link_bps=link,
                               overhead_s=overhead))
    return Cluster(tuple(servers), cloud or Cloud(PAPER_CLOUD_FLOPS, DEFAULT_LINK_BPS), tuple(models))


def plan_quotas(plans: Mapping[str, Plan], names: Sequence[str]) -> dict[str, Quotas]:
    """Threads per sub-zone of every executor, ``{executor: {model: {stage: threads}}}``, from the plans:
    the core's one rule (``plan.quotas.plan_quotas``, the orchestrator's too) by executor name."""
    by_index = stage_quotas({model: plan.stages for model, plan in plans.items()}, range(len(names)))
    return {names[m]: q for m, q in by_index.items()}


def total(quotas: Quotas) -> int:
    """Threads of all an executor's sub-zones together (its zone total)."""
    return sum(sum(q.values()) for q in quotas.values())


def same_quotas(a: Quotas, b: Quotas) -> bool:
    """Equal, ignoring models without any quota."""
    return {m: q for m, q in a.items() if q} == {m: q for m, q in b.items() if q}


def update_order(current: Mapping[str, Quotas], desired: Mapping[str, Quotas]) -> list[str]:
    """Executors whose quotas change, those whose total shrinks first: capacity freed before it is used."""
    changed = [n for n in desired if not same_quotas(current.get(n, {}), desired[n])]
    return sorted(changed, key=lambda n: (total(desired[n]) - total(current.get(n, {})), n))


OVERHEAD_FLOOR_S = 1e-3  # a change of per-request overhead below threshold * 1 ms does not re-plan


def cluster_changes(old: Cluster, old_down: frozenset[str], new: Cluster, down: frozenset[str],
                    threshold: float) -> list[str]:
    """What changed between the cluster the plans were made on and the one measured now, in words:
    executors down or back, executors added or gone, and, for each executor up, a relative change of
    its speed or link rate above ``threshold`` or of its per-request overhead above ``threshold``
    times the larger of the old overhead and 1 ms."""
    out = [f"{n} down" for n in sorted(down - old_down)] + [f"{n} back" for n in sorted(old_down - down)]
    before = {s.name: s for s in old.servers}
    if set(before) != {s.name for s in new.servers}:
        out.append("executors changed")
    for s in new.servers:
        o = before.get(s.name)
        if o is None or s.name in down:
            continue
        if relative_change(o.flops_per_thread, s.flops_per_thread) > threshold:
            out.append(f"{s.name} speed {s.flops_per_thread / o.flops_per_thread - 1:+.0%}")
        if relative_change(o.link_bps, s.link_bps) > threshold:
            out.append(f"{s.name} link {s.link_bps / o.link_bps - 1:+.0%}")
        if abs(s.overhead_s - o.overhead_s) > threshold * max(o.overhead_s, OVERHEAD_FLOOR_S):
            out.append(f"{s.name} overhead {1e3 * o.overhead_s:.1f} -> {1e3 * s.overhead_s:.1f} ms")
    return out
