"""Serving modes and served configurations, one object each, in two registries.

A **serving mode** (``SERVING_MODES``) is how the orchestrator runs a model's tasks:

* ``split``: the planner's plan, a pipeline of stages split across the executors (the paper's);
* ``no-split``: the edge layers whole on one executor (the least loaded), then the cloud;
* ``dads``: layers ``[0, cut)`` whole on one executor, the rest in the cloud from the cut's map, with
  the DADS min-cut (``plan.dads``) for the smallest zone, clamped to the edge part (the executors run
  no fully connected layer).

A **served configuration** (``SERVED``) names what a measurement and its prediction describe: a serving
mode, a planner family and a pipeline together (``paper`` = split + the paper's planner + lockstep).
The orchestrator, the simulator's ``sim.served``, the testbed's bench and the load test all take these
objects; adding a mode is a class here and its name in ``type_aliases.ServingModeName``.
"""

from __future__ import annotations

from typing import NamedTuple

from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.planner import StagePlan
from edgesplit.registry import Registry
from edgesplit.split import part_total
from edgesplit.type_aliases import PipelineMode, ServedName, ServingModeName, Split


def dads_cut(spec: ModelSpec, cluster: Cluster) -> int:
    """The served DADS cut: the min-cut for the smallest zone, clamped to the edge part."""
    from edgesplit.plan.dads import dads

    threads = min(s.threads for s in cluster.servers)
    return min(dads(spec, cluster, threads=threads).cut, spec.n_edge)


def whole_stage(spec: ModelSpec, stop: int, server: int, threads: int) -> StagePlan:
    """Layers ``[0, stop)`` unsplit on one server with ``threads`` threads: one rows slice of all rows."""
    return StagePlan(0, stop, "rows", (server,), (part_total(spec, 0, stop, "rows"),), (threads,))


class ServingMode:
    """How a model's tasks are served (module docstring). ``planned``: tasks follow the planner's plan
    (a pipeline of split stages); otherwise each task runs ``[0, edge_stop)`` whole on one executor."""

    name: ServingModeName
    planned: bool = False

    def edge_stop(self, spec: ModelSpec, cluster: Cluster) -> int:
        """The first layer the cloud runs for a task not following a plan."""
        return spec.n_edge


class SplitMode(ServingMode):
    name: ServingModeName = "split"
    planned = True


class NoSplitMode(ServingMode):
    name: ServingModeName = "no-split"


class DadsMode(ServingMode):
    name: ServingModeName = "dads"

    def edge_stop(self, spec: ModelSpec, cluster: Cluster) -> int:
        return dads_cut(spec, cluster)


SERVING_MODES: Registry[ServingModeName, ServingMode] = Registry(
    "serving mode", {m.name: m for m in (SplitMode(), NoSplitMode(), DadsMode())})


class Served(NamedTuple):
    """A served configuration: the serving mode, the planner family and the pipeline."""

    mode: ServingModeName
    split: Split = "edgesplit"
    pipeline: PipelineMode = "async"

    @property
    def serving(self) -> ServingMode:
        return SERVING_MODES[self.mode]


SERVED: Registry[ServedName, Served] = Registry("served mode", {
    "no-split": Served("no-split"),
    "dads": Served("dads"),
    "paper": Served("split", "paper", "lockstep"),
    "edgesplit": Served("split"),
})
