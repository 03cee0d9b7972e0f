"""The methods the paper compares, as simulator workloads (paper section 5.1.3).

* ``no-split``: the whole model on one edge server, ``t`` threads per task, tasks in parallel.
* ``dads``: the min-cut edge/cloud partition (``edgesplit.plan.dads``) for ``t`` threads per task.
* ``coedge``: the whole edge part on every server, the input split by height by capacity (exact,
  with halos): one fused rows stage over each server's whole zone.
* ``channels``: Average Channel Split, every conv but the first split evenly by output channels.
* ``ours-paper``: the paper's method: kernel-rows, one conv per group, eq. (7) + Algorithm 1,
  sub-zones from the TD3 allocator (falls back to the exact allocator, then to the FLOPs-share
  rule, and says which in ``notes``), lockstep pipeline.
* ``ours``: edgesplit: the planner's best plan (fused groups, any strategy, optimal split; or one
  conv per group with the exact allocator's sub-zones when that predicts lower), async.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.dads import dads, input_sizes, no_split
from edgesplit.plan.latency import BYTES_PER_VALUE, cloud_transfer_time, predict
from edgesplit.plan.planner import StagePlan, apportion, make_plan
from edgesplit.plan.ratios import algorithm1, eq7_coefficients, eq7_ratios
from edgesplit.registry import Registry
from edgesplit.sim.allocation import exact_threads, paper_threads
from edgesplit.sim.engine import PipelineMode
from edgesplit.sim.timing import CloudStep, Replicated, Workload
from edgesplit.sim.workload import pipeline
from edgesplit.split import conv_groups, part_total

Mode = Literal["ours-paper", "ours", "no-split", "dads", "coedge", "channels"]


@dataclass(frozen=True)
class Method:
    """A method ready to simulate: its workload, its stages (split methods), the analytic single-task
    latency of the latency model (s), and notes on choices made (e.g. which allocator)."""

    mode: Mode
    workload: Workload
    stages: tuple[StagePlan, ...]
    predicted_s: float
    notes: tuple[str, ...] = ()
    cut: int = -1

    @property
    def pipeline(self) -> PipelineMode:
        return BASELINES[self.mode].pipeline


def zones(cluster: Cluster) -> tuple[int, ...]:
    return tuple(s.threads for s in cluster.servers)


def no_split_method(spec: ModelSpec, cluster: Cluster, threads: int) -> Method:
    """No Split: the whole model, FC layers included, on one server's ``threads`` threads."""
    runs = [no_split(spec, cluster, threads, m) for m in range(len(cluster.servers))]
    n = len(spec.layers)
    wl = Replicated(spec.name, threads, tuple(r.edge_s for r in runs), (None,) * len(runs), zones(cluster),
                    (n,) * len(runs))
    return Method("no-split", wl, (), wl.single_task_s(), cut=n)


def dads_method(spec: ModelSpec, cluster: Cluster, threads: int) -> Method:
    """DADS: per server, the min-cut partition for one task on ``threads`` of its threads; layers
    ``[0, cut)`` run on the task's server, the rest in the cloud after its uplink (eq. 4)."""
    cuts = [dads(spec, cluster, threads, m) for m in range(len(cluster.servers))]
    clouds: list[CloudStep | None] = []
    for r in cuts:
        if r.cut == len(spec.layers):
            clouds.append(None)
            continue
        transfer = cloud_transfer_time(BYTES_PER_VALUE * input_sizes(spec)[r.cut], cluster.cloud.link_bps)
        clouds.append(CloudStep(transfer, r.cloud_s, cluster.cloud.overhead_s))
    wl = Replicated(spec.name, threads, tuple(r.edge_s for r in cuts), tuple(clouds), zones(cluster),
                    tuple(r.cut for r in cuts))
    cut = cuts[0].cut
    where = ("everything in the cloud" if cut == 0 else "the whole model on the edge (no cut)"
             if cut == len(spec.layers) else f"layers [0, {cut}) on the edge, the rest in the cloud")
    return Method("dads", wl, (), wl.single_task_s(), (f"DADS cut on server 0: {where}",), cut=cut)


def split_method(spec: ModelSpec, cluster: Cluster, mode: Mode, stages: Sequence[StagePlan],
                 notes: Sequence[str] = ()) -> Method:
    """A split method from its stages; the analytic latency is ``latency.predict`` (eq. 5)."""
    return Method(mode, pipeline(spec, cluster, stages), tuple(stages),
                  predict(spec, cluster, stages).total_s, tuple(notes))


def zone_table(spec: ModelSpec, cluster: Cluster, groups: Sequence[tuple[int, int]]) -> list[list[int]]:
    """threads[g][m]: each server's zone split among the groups by FLOPs (the paper's sub-zones)."""
    flops = spec.layer_flops()
    weights = [sum(flops[a:b]) for a, b in groups]
    per_server = [apportion(weights, s.threads) for s in cluster.servers]
    return [[per_server[m][g] for m in range(len(cluster.servers))] for g in range(len(groups))]


def coedge_stages(spec: ModelSpec, cluster: Cluster) -> list[StagePlan]:
    """CoEdge: the whole edge part on every server, its input split along the height by capacity.

    Done exactly: one fused ``rows`` group (each server receives its rows plus the halo); the rows
    are shared by eq. (7) on each server's whole zone and made integers with Algorithm 1.
    """
    total = part_total(spec, 0, spec.n_edge, "rows")
    threads = [s.threads for s in cluster.servers]
    etas = [s.flops_per_thread for s in cluster.servers]
    ratios = eq7_ratios(eq7_coefficients(spec.edge_flops(), threads, etas))
    parts = algorithm1(total, ratios, [k * e for k, e in zip(threads, etas, strict=True)])
    used = [m for m, p in enumerate(parts) if p > 0]
    return [StagePlan(0, spec.n_edge, "rows", tuple(used), tuple(parts[m] for m in used),
                      tuple(threads[m] for m in used))]


def channel_stages(spec: ModelSpec, cluster: Cluster) -> list[StagePlan]:
    """Average Channel Split: one conv per group, every conv but the first split evenly by output
    channels over all servers; the first group runs whole on server 0. Sub-zones by FLOPs share."""
    groups = conv_groups(spec)
    table = zone_table(spec, cluster, groups)
    m_count = len(cluster.servers)
    stages = []
    for g, (a, b) in enumerate(groups):
        if g == 0:
            stages.append(StagePlan(a, b, "rows", (0,), (part_total(spec, a, b, "rows"),), (table[g][0],)))
            continue
        total = part_total(spec, a, b, "channels")
        parts = [total // m_count + (1 if i < total % m_count else 0) for i in range(m_count)]
        used = [m for m in range(m_count) if parts[m] > 0]
        stages.append(StagePlan(a, b, "channels", tuple(used), tuple(parts[m] for m in used),
                                tuple(table[g][m] for m in used)))
    return stages


def ours_paper_method(spec: ModelSpec, cluster: Cluster, allocate: bool = True) -> Method:
    """The paper's method; sub-zones from TD3 or the exact allocator (``allocate``), else FLOPs share."""
    table, note = paper_threads(spec, cluster) if allocate else (None, "FLOPs share per conv")
    plan = make_plan(spec, cluster, "paper", threads=table)
    return split_method(spec, cluster, "ours-paper", plan.stages, (f"sub-zones: {note}",))


def ours_method(spec: ModelSpec, cluster: Cluster, allocate: bool = True) -> Method:
    """edgesplit: the planner's plan (fused groups, sub-zones by FLOPs share, re-balanced), or one conv
    per group with the exact allocator's sub-zones, whichever predicts the lower latency."""
    plan = make_plan(spec, cluster, "edgesplit")
    note = "planner's best plan (fused groups)"
    if allocate:
        table, how = exact_threads(spec, cluster, "edgesplit")
        other = make_plan(spec, cluster, "edgesplit", threads=table)
        if other.predicted.total_s < plan.predicted.total_s:
            plan, note = other, f"planner's plan, one conv per group, sub-zones from the {how}"
    return split_method(spec, cluster, "ours", plan.stages, (note,))


class Baseline(NamedTuple):
    """A simulated method: its label in figures, how it is built (``build(spec, cluster, threads,
    allocate)``), whether ``threads`` is its threads per task (No Split, DADS) and its pipeline."""

    label: str
    build: Callable[[ModelSpec, Cluster, int, bool], Method]
    per_task_threads: bool = False
    pipeline: PipelineMode = "async"


BASELINES: Registry[Mode, Baseline] = Registry("mode", {
    "ours-paper": Baseline("Ours (paper)", lambda s, c, _t, a: ours_paper_method(s, c, a), False, "lockstep"),
    "ours": Baseline("Ours (edgesplit)", lambda s, c, _t, a: ours_method(s, c, a)),
    "no-split": Baseline("No Split", lambda s, c, t, _a: no_split_method(s, c, t), per_task_threads=True),
    "dads": Baseline("DADS", lambda s, c, t, _a: dads_method(s, c, t), per_task_threads=True),
    "coedge": Baseline("CoEdge", lambda s, c, _t, _a: split_method(s, c, "coedge", coedge_stages(s, c))),
    "channels": Baseline("Average Channel Split",
                         lambda s, c, _t, _a: split_method(s, c, "channels", channel_stages(s, c))),
})
MODES: tuple[Mode, ...] = BASELINES.names
LABELS: dict[str, str] = {name: b.label for name, b in BASELINES.items()}


def build(spec: ModelSpec, cluster: Cluster, mode: Mode, threads: int = 1, allocate: bool = True) -> Method:
    """The method ``mode`` on ``cluster``; ``threads`` per task for the baselines No Split and DADS;
    ``allocate=False`` skips the allocator (sub-zones by FLOPs share: faster, for tests)."""
    how = BASELINES[mode]
    if how.per_task_threads and not 1 <= threads <= max(zones(cluster)):
        raise InvalidPlan(f"{threads} threads per task: expected 1 to {max(zones(cluster))}, the largest "
                          "zone of a server")
    return how.build(spec, cluster, threads, allocate)
