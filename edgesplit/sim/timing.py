"""What the simulator needs to know about time: the steps of one task, in seconds.

The engine never computes a FLOP or a byte itself: every duration comes from the planner's latency
model (``edgesplit.plan.latency``, eq. 1-5) through ``edgesplit.sim.workload``, so the simulator and
the real services predict with the same numbers. These types are the small interface between them.

Two ways to run a model:

* ``SplitPipeline``: the model is cut into stages (groups of edge layers); stage i of every task runs
  on sub-zone i of the servers it is split across (paper section 3.2), one task at a time per stage;
  the features then go over the controller's uplink to the cloud (FC layers).
* ``Replicated``: each task runs alone on one edge server with ``threads`` threads of its zone (the
  baselines No Split and DADS), then optionally its cloud part over that server's uplink.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CO1 = -1  # sender id of controller co1 on the edge-cloud uplink (servers are 0..M-1)


@dataclass(frozen=True)
class ServerStep:
    """One server's part of one stage of one task. Seconds, at the links' nominal rates.

    ``send_s``: co1 -> server (the slice's input, eq. 3's merged part); ``recv_s``: server -> co1
    (the slice's output, eq. 3's partial output); ``compute_s``: eq. (1); ``overhead_s``: a fixed
    per-request cost (latency, not link time).
    """

    server: int
    send_s: float
    compute_s: float
    recv_s: float
    overhead_s: float = 0.0

    @property
    def total_s(self) -> float:
        """Alone on idle links: overhead + send + compute + receive. Seconds."""
        return self.overhead_s + self.send_s + self.compute_s + self.recv_s

    def batched(self, batch: int) -> ServerStep:
        """The step for ``batch`` images in one request: send, compute and receive x batch, the
        overhead once (``edgesplit.plan.latency``, *Batches*)."""
        return replace(self, send_s=batch * self.send_s, compute_s=batch * self.compute_s,
                       recv_s=batch * self.recv_s)


@dataclass(frozen=True)
class StageSteps:
    """One stage (a group of edge layers ``[start, stop)``) split across ``servers``."""

    label: str
    servers: tuple[ServerStep, ...]
    controller_s: float = 0.0  # merge and unsplit layers on co1 (the paper neglects them)

    @property
    def total_s(self) -> float:
        """The stage alone: the slowest server, then the merge. Seconds (eq. 5's inner max)."""
        return max((s.total_s for s in self.servers), default=0.0) + self.controller_s

    def batched(self, batch: int) -> StageSteps:
        """The stage for a batch of ``batch`` tasks run as one unit (merges x batch)."""
        return replace(self, servers=tuple(s.batched(batch) for s in self.servers),
                       controller_s=batch * self.controller_s)


@dataclass(frozen=True)
class CloudStep:
    """The cloud part of one task: uplink transfer (eq. 4), then overhead and FC compute (eq. 2)."""

    transfer_s: float
    compute_s: float
    overhead_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.transfer_s + self.overhead_s + self.compute_s

    def batched(self, batch: int) -> CloudStep:
        """One cloud request for ``batch`` tasks: transfer and compute x batch, the overhead once."""
        return replace(self, transfer_s=batch * self.transfer_s, compute_s=batch * self.compute_s)


@dataclass(frozen=True)
class SplitPipeline:
    """A model run as a pipeline of split stages (ours, CoEdge, channel split)."""

    model: str
    stages: tuple[StageSteps, ...]
    cloud: CloudStep | None

    def single_task_s(self) -> float:
        """Latency of one task on an idle system, eq. (5). Seconds."""
        cloud = self.cloud.total_s if self.cloud is not None else 0.0
        return sum(s.total_s for s in self.stages) + cloud

    def batched(self, batch: int) -> SplitPipeline:
        """The pipeline's steps for a batch of ``batch`` tasks run as one unit (the orchestrator's
        dynamic batching); ``batched(1)`` is this pipeline. Its ``single_task_s`` is the batch's
        latency on an idle system; the bottleneck stage's ``total_s / batch`` its cost per task."""
        if batch < 1:
            raise ValueError(f"batch of {batch} tasks: expected 1 or more")
        return replace(self, stages=tuple(s.batched(batch) for s in self.stages),
                       cloud=None if self.cloud is None else self.cloud.batched(batch))


@dataclass(frozen=True)
class Replicated:
    """A model run whole on one edge server per task with ``threads`` threads (No Split, DADS).

    Per server m: ``edge_s[m]`` is the edge part's compute time at those threads (the whole model for
    No Split) and ``cloud[m]`` the part after the cut (None when nothing goes to the cloud). A task
    goes to the server that would finish it first among those with enough free threads (among
    equal ones, the one with the most free threads: tasks spread over the servers and their uplinks).
    """

    model: str
    threads: int
    edge_s: tuple[float, ...]
    cloud: tuple[CloudStep | None, ...]
    zone: tuple[int, ...]  # threads of the model's zone on each server (caps concurrent tasks)
    cuts: tuple[int, ...] = ()  # DADS: edge layers [0, cut) on the edge, per server

    def alone_s(self, server: int) -> float:
        """One task alone on ``server``: edge compute, then the cloud part. Seconds."""
        cloud = self.cloud[server]
        return self.edge_s[server] + (cloud.total_s if cloud is not None else 0.0)

    def single_task_s(self) -> float:
        return min(self.alone_s(m) for m in range(len(self.edge_s)) if self.zone[m] >= self.threads)


Workload = SplitPipeline | Replicated
