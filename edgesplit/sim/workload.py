"""Workloads for the simulator, from the planner and its latency model (``edgesplit.plan``).

Every duration here is computed by ``edgesplit.plan.latency`` (eq. 1-5) or ``edgesplit.plan.dads``;
this module only arranges them into the engine's steps. The one thing added is the direction of a
round trip: eq. (3) gives ``(o_out + o_merged) / ra_m`` and the engine needs the two halves on
their own links, so the round trip is divided in proportion to the slice's input and output bytes
(``latency.slice_load``): the halves add up to the model's round trip exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.latency import StageLike, cloud_times, server_times, slice_load
from edgesplit.sim.timing import CloudStep, ServerStep, SplitPipeline, StageSteps
from edgesplit.split import make_slices


def stage_label(stage: StageLike) -> str:
    return f"[{stage.start},{stage.stop}) {stage.strategy} x{len(stage.servers)}"


def stage_steps(spec: ModelSpec, cluster: Cluster, stage: StageLike,
                flops: Sequence[float] | None = None) -> StageSteps:
    """The engine's view of one planned stage: per server send, compute, receive, overhead (s)."""
    flops = spec.layer_flops() if flops is None else flops
    times = server_times(spec, cluster, stage, flops)
    slices = make_slices(spec, stage.start, stage.stop, stage.strategy, stage.parts)
    steps = []
    for t, sl in zip(times, slices, strict=True):
        if sl.empty:
            continue  # no request is sent (latency.server_times gives it 0 s)
        load = slice_load(spec, sl, flops)
        moved = load.in_bytes + load.out_bytes
        share_in = load.in_bytes / moved if moved else 0.0
        steps.append(ServerStep(t.server, t.transfer_s * share_in, t.compute_s,
                                t.transfer_s * (1.0 - share_in), t.overhead_s))
    return StageSteps(stage_label(stage), tuple(steps))


def pipeline(spec: ModelSpec, cluster: Cluster, stages: Sequence[StageLike],
             cloud_from: int | None = None) -> SplitPipeline:
    """A split pipeline (ours, CoEdge, channel split): its stages, then the cloud (eq. 2 and 4) from
    layer ``cloud_from`` (default: the fully connected layers)."""
    flops = spec.layer_flops()
    steps = tuple(stage_steps(spec, cluster, st, flops) for st in stages)
    transfer, compute, overhead = cloud_times(spec, cluster.cloud, cloud_from)
    # co1's per-task overhead rides with the cloud step: once per task, latency only (no resource held)
    cloud = CloudStep(transfer, compute, overhead + cluster.controller_overhead_s)
    return SplitPipeline(spec.name, steps, cloud)
