"""SimPy simulation of edgesplit and the paper's evaluation (section 5): baselines, figures 6-9.

* ``engine``: the discrete-event simulation (priority queues, lockstep/async pipelines, links, cloud);
* ``timing`` / ``workload``: what a task's steps take, from the planner's latency model;
* ``baselines``: No Split, DADS, CoEdge, Average Channel Split, Ours (paper), Ours (edgesplit);
* ``figures`` / ``accuracy`` / ``plots`` / ``reproduce``: the paper's figures as CSV and PNG, and
  ``summary.json`` with every number the docs quote; ``sensitivity``: the conclusions under the other
  reading of two choices the paper leaves open;
* ``report`` / ``docs``: the docs' generated tables, rendered from ``summary.json`` and checked;
* ``commands``: ``edgesplit simulate``, ``edgesplit reproduce`` (and ``reproduce report``),
  ``edgesplit bench sim``.

This package imports torch itself only in ``accuracy`` (fig. 9 runs real split inference).
"""

from edgesplit.sim.baselines import LABELS, MODES, Method, build
from edgesplit.sim.engine import SimConfig, simulate
from edgesplit.sim.records import SimResult, StageRecord, TaskRecord, TaskSpec, make_tasks
from edgesplit.sim.timing import CloudStep, Replicated, ServerStep, SplitPipeline, StageSteps

__all__ = [
    "LABELS",
    "MODES",
    "CloudStep",
    "Method",
    "Replicated",
    "ServerStep",
    "SimConfig",
    "SimResult",
    "SplitPipeline",
    "StageRecord",
    "StageSteps",
    "TaskRecord",
    "TaskSpec",
    "build",
    "make_tasks",
    "simulate",
]
