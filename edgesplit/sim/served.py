"""The stack's serving modes as simulator workloads: what the orchestrator really runs, for a cluster file.

The paper's baselines (``sim.baselines``) follow the paper: its No Split runs the FC layers on the
edge server too. The orchestrator serves differently, and a measured run must be set beside a
prediction of what was served:

* ``no-split``: the edge layers whole on one executor (the least loaded), then the cloud;
* ``dads``: layers ``[0, cut)`` on one executor, the rest in the cloud from the cut's map, with the cut
  of ``plan.dads`` for the smallest zone (the orchestrator's ``PlanSource``);
* ``paper``: ``make_plan(split="paper")``: kernel-rows, one conv per stage, eq. (7) + Algorithm 1;
* ``edgesplit``: ``make_plan(split="edgesplit")``, the planner's plan (with its edge-cloud cut where
  the cluster file gives the cloud's conv rate, as on the testbed).

The configurations are ``plan.modes.SERVED``; the cut of ``dads`` and the whole stage of ``no-split``
and ``dads`` are ``plan.modes``' (the orchestrator uses the same). Every duration comes from the
latency model (``plan.latency``, eq. 1-5), host slowdown and the controller's per-task overhead
included. The cloud computes one task at a time (``SimConfig.cloud_serial``), as the stack's cloud
service does on its host: with the paper's elastic cloud, a plan that sends the whole model to a
0.5-core cloud was predicted 239-428 tasks/s where the testbed measured 7-13. Likewise the
executors of a host of at most one core compute one stage step at a time (``SimConfig.cpu_groups``):
each step is priced at the host's whole quota, and the paper's 5 sub-zones of a 0.2-core host were
predicted 27.7 tasks/s in parallel against 8.1 measured.
"""

from __future__ import annotations

from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.dads import input_sizes
from edgesplit.plan.latency import BYTES_PER_VALUE, cloud_part_time, cloud_transfer_time, stage_latency
from edgesplit.plan.modes import SERVED, dads_cut, whole_stage
from edgesplit.plan.planner import make_plan
from edgesplit.sim.engine import SimConfig, simulate
from edgesplit.sim.records import make_tasks
from edgesplit.sim.timing import CloudStep, Replicated, Workload
from edgesplit.sim.workload import pipeline
from edgesplit.type_aliases import ServedName

ServedMode = ServedName
SERVED_MODES: tuple[ServedMode, ...] = SERVED.names

__all__ = ["SERVED_MODES", "ServedMode", "cpu_groups", "dads_cut", "predict_served", "served_workload"]


def _replicated(spec: ModelSpec, cluster: Cluster, cut: int) -> Replicated:
    """Layers ``[0, cut)`` whole on any one server, the rest in the cloud (no-split: cut = n_edge)."""
    flops = spec.layer_flops()
    edge = tuple(stage_latency(spec, cluster, whole_stage(spec, cut, m, s.threads), flops).total_s
                 if cut else 0.0 for m, s in enumerate(cluster.servers))
    c = cluster.cloud
    cloud = CloudStep(cloud_transfer_time(BYTES_PER_VALUE * input_sizes(spec)[cut], c.link_bps),
                      cloud_part_time(spec, cut, c),
                      c.overhead_s + cluster.controller_overhead_s)
    zones = tuple(s.threads for s in cluster.servers)
    return Replicated(spec.name, min(zones), edge, (cloud,) * len(edge), zones, (cut,) * len(edge))


def served_workload(spec: ModelSpec, cluster: Cluster, mode: ServedMode) -> Workload:
    """The workload the stack runs for ``spec`` on ``cluster`` in ``mode`` (module docstring)."""
    served = SERVED[mode]
    if not served.serving.planned:
        return _replicated(spec, cluster, served.serving.edge_stop(spec, cluster))
    plan = make_plan(spec, cluster, served.split)
    if not plan.stages:  # the planner's cut sends the whole model to the cloud, as DADS's cut 0 does
        return _replicated(spec, cluster, 0)
    return pipeline(spec, cluster, plan.stages, plan.cloud_from)


def cpu_groups(cluster: Cluster) -> tuple[int | None, ...]:
    """Per server, the index of its host when that host has at most one core (its steps then share
    it, one at a time), else None."""
    hosts = sorted({s.host for s in cluster.servers if s.host is not None})
    return tuple(hosts.index(s.host) if s.host is not None and s.host_cores is not None and s.host_cores <= 1
                 else None for s in cluster.servers)


def predict_served(spec: ModelSpec, cluster: Cluster, mode: ServedMode, tasks: int = 40,
                   seed: int = 0) -> dict[str, float]:
    """The simulator's single-task latency and saturation throughput (``tasks`` submitted at once)."""
    workload = served_workload(spec, cluster, mode)
    config = SimConfig(pipeline=SERVED[mode].pipeline, seed=seed, cloud_serial=True,
                       cpu_groups=cpu_groups(cluster))
    one = simulate({spec.name: workload}, make_tasks(spec.name, 1, seed=seed), config)
    burst = simulate({spec.name: workload}, make_tasks(spec.name, tasks, seed=seed), config)
    return {"single_task_ms": 1e3 * one.tasks[0].latency_s, "throughput_per_s": burst.throughput_per_s()}
