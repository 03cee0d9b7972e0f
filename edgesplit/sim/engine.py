"""SimPy discrete-event simulation of edgesplit: priority queues, split pipelines, links, the cloud.

The model (DESIGN.md section 1, paper section 3.2):

* one queue per CNN; a task leaves it when stage 0 (or, for a replicated baseline, a server with
  enough free threads) is free; the highest priority first (1 is the highest), FIFO within a level;
  with ``aging_s > 0`` a waiting task gains one level per ``aging_s`` seconds;
* ``SplitPipeline``: stage i of a CNN runs on sub-zone i of its servers, one task at a time;
  ``async``: a stage starts as soon as its input is merged and its sub-zone is free; ``lockstep``
  (paper fig. 2): all stages advance together, a tick ends when its slowest stage has merged; the
  cloud part runs off the tick (the edge does not wait for it);
* links are FIFO resources, one transfer at a time per direction: co1 -> server m and server m -> co1
  (full duplex), and one uplink to the cloud per sender (co1, or an edge server for DADS); the cloud
  computes every task's FC layers in parallel (eq. 2 per task), as the paper's elastic cloud, or,
  with ``cloud_serial``, one task at a time, the most urgent first, as the stack's cloud service
  (one compute thread) does on a host of fixed CPU;
* with ``cpu_groups``, the servers of one group (the executors of one host of at most a core, whose
  every stage step already computes at the whole host's quota) compute one step at a time, the most
  urgent first, where the paper's servers compute each sub-zone's step in parallel;
* with a link spread ``s``, each transfer draws its rate uniformly in ``[1-s, 1+s]`` x nominal from a
  stream seeded by ``(seed, task id)``, so the draws do not depend on event order.

Event order is SimPy's heap key ``(time, priority, insertion counter)``; the engine schedules in a
fixed order (tasks by id, servers by index), so one seed gives one run.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from edgesplit.errors import InvalidPlan
from edgesplit.sim.queue import PriorityQueue, Signal
from edgesplit.sim.records import CloudRecord, SimResult, StageRecord, TaskRecord, TaskSpec
from edgesplit.sim.timing import CO1, CloudStep, Replicated, ServerStep, SplitPipeline, StageSteps, Workload
from edgesplit.type_aliases import PipelineMode

__all__ = ["PipelineMode", "SimConfig", "simulate"]
Proc = Generator[Any, Any, Any]
Progress = Callable[[int], None]  # tasks finished so far
PROGRESS_EVERY = 20_000  # simulation events between two progress calls


@dataclass(frozen=True)
class SimConfig:
    """How to run: pipeline mode, priority aging (s, 0 = off), link-rate spreads (fractions), seed."""

    pipeline: PipelineMode = "async"
    aging_s: float = 0.0
    edge_link_spread: float = 0.0
    cloud_link_spread: float = 0.0
    seed: int = 0
    cloud_serial: bool = False  # the cloud computes one task at a time (module docstring)
    cpu_groups: tuple[int | None, ...] = ()  # per server: its shared CPU, or None (module docstring)


class Simulation:
    """One run over a set of workloads (one per CNN) sharing the links."""

    def __init__(self, workloads: Mapping[str, Workload], config: SimConfig) -> None:
        self.env = simpy.Environment()
        self.workloads = dict(workloads)
        self.config = config
        self.links: dict[tuple[str, int], simpy.Resource] = {}
        self.draws: dict[int, np.ndarray] = {}
        self.records: dict[int, TaskRecord] = {}
        self.finished: set[int] = set()
        self.cloud_cpu = simpy.PriorityResource(self.env, capacity=1) if config.cloud_serial else None
        self.cpus = {g: simpy.PriorityResource(self.env, capacity=1)
                     for g in config.cpu_groups if g is not None}

    # links -------------------------------------------------------------------------------------
    def _link(self, kind: str, index: int) -> simpy.Resource:
        key = (kind, index)
        if key not in self.links:
            self.links[key] = simpy.Resource(self.env, capacity=1)
        return self.links[key]

    def _slots(self, model: str) -> int:
        """Transfers a task of ``model`` can make: two per server step, then the cloud (the last)."""
        wl = self.workloads[model]
        steps = sum(len(s.servers) for s in wl.stages) if isinstance(wl, SplitPipeline) else 0
        return 2 * steps + 1

    def _factor(self, rec: TaskRecord, slot: int, spread: float) -> float:
        """Nominal rate / drawn rate for transfer ``slot`` of a task (1 without a spread); the draws
        come from a stream seeded by (seed, task id), so they do not depend on event order."""
        if spread <= 0:
            return 1.0
        if rec.id not in self.draws:
            rng = np.random.default_rng([self.config.seed, 1, rec.id])
            self.draws[rec.id] = rng.uniform(-1.0, 1.0, size=self._slots(rec.model))
        return 1.0 / (1.0 + spread * float(self.draws[rec.id][slot]))

    def _transfer(self, kind: str, index: int, seconds: float, acc: list[float]) -> Proc:
        """Hold link ``(kind, index)`` for ``seconds``; adds (wait, busy) to ``acc``."""
        if seconds <= 0:
            return
        t0 = self.env.now
        with self._link(kind, index).request() as req:
            yield req
            acc[0] += self.env.now - t0
            acc[1] += seconds
            yield self.env.timeout(seconds)

    def _compute(self, cpu: simpy.PriorityResource | None, priority: int, seconds: float) -> Proc:
        """``seconds`` of compute: at once (None: the paper's servers and cloud), or holding ``cpu``,
        one task at a time, the most urgent first (``cloud_serial``, ``cpu_groups``)."""
        if cpu is None:
            yield self.env.timeout(seconds)
            return
        with cpu.request(priority=priority) as turn:
            yield turn
            yield self.env.timeout(seconds)

    # one stage of one task -----------------------------------------------------------------------
    def _server_step(self, rec: TaskRecord, slot: int, step: ServerStep,
                     out: list[tuple[float, ...]]) -> Proc:
        acc = [0.0, 0.0]
        spread = self.config.edge_link_spread
        yield self.env.timeout(step.overhead_s)
        yield from self._transfer("down", step.server, step.send_s * self._factor(rec, slot, spread), acc)
        groups = self.config.cpu_groups
        group = groups[step.server] if step.server < len(groups) else None
        yield from self._compute(None if group is None else self.cpus[group], rec.priority, step.compute_s)
        yield from self._transfer("up", step.server, step.recv_s * self._factor(rec, slot + 1, spread), acc)
        out.append((self.env.now, step.compute_s, acc[1], step.overhead_s, acc[0], step.server))

    def _stage(self, rec: TaskRecord, index: int, stage: StageSteps, ready_s: float) -> Proc:
        """Run stage ``index`` of a task on all its servers, then the merge on co1."""
        srec = StageRecord(index, stage.label, ready_s, self.env.now)
        rec.stages.append(srec)
        outs: list[tuple[float, ...]] = []
        slot0 = 2 * sum(len(s.servers) for s in self._pipeline(rec.model).stages[:index])
        procs = [self.env.process(self._server_step(rec, slot0 + 2 * j, step, outs))
                 for j, step in enumerate(stage.servers)]
        yield self.env.all_of(procs)
        yield self.env.timeout(stage.controller_s)
        if outs:
            last = max(outs, key=lambda o: (o[0], o[5]))
            srec.compute_s, srec.transfer_s, srec.overhead_s, srec.link_wait_s = last[1:5]
            srec.server = int(last[5])
        srec.end_s = self.env.now

    def _cloud(self, rec: TaskRecord, cloud: CloudStep | None, sender: int) -> Proc:
        """Features over the sender's uplink (eq. 4), then the FC layers (eq. 2); the task ends."""
        if cloud is not None:
            crec = CloudRecord(ready_s=self.env.now)
            rec.cloud = crec
            acc = [0.0, 0.0]
            last = self._slots(rec.model) - 1
            seconds = cloud.transfer_s * self._factor(rec, last, self.config.cloud_link_spread)
            yield from self._transfer("cloud", sender, seconds, acc)
            crec.start_s = crec.ready_s + acc[0]
            crec.transfer_end_s, crec.transfer_s = self.env.now, acc[1]
            if self.cloud_cpu is None:  # the paper's elastic cloud: one timeout, as ever
                yield self.env.timeout(cloud.overhead_s + cloud.compute_s)
            else:  # the overhead (request, controller) beside other tasks, the compute in turn
                yield self.env.timeout(cloud.overhead_s)
                yield from self._compute(self.cloud_cpu, rec.priority, cloud.compute_s)
            crec.compute_s, crec.overhead_s, crec.end_s = cloud.compute_s, cloud.overhead_s, self.env.now
        rec.end_s = self.env.now
        self.finished.add(rec.id)
        self.draws.pop(rec.id, None)

    def _pipeline(self, model: str) -> SplitPipeline:
        wl = self.workloads[model]
        assert isinstance(wl, SplitPipeline)
        return wl

    # the three executors -------------------------------------------------------------------------
    def _async(self, wl: SplitPipeline, queue: PriorityQueue) -> Proc:
        zones = [simpy.Resource(self.env, capacity=1) for _ in wl.stages]

        def run(rec: TaskRecord, first: simpy.resources.resource.Request) -> Proc:
            held = first
            ready = rec.admitted_s
            for i, stage in enumerate(wl.stages):
                if i > 0:
                    held = zones[i].request()
                    yield held
                yield from self._stage(rec, i, stage, ready)
                zones[i].release(held)
                ready = self.env.now
            yield from self._cloud(rec, wl.cloud, CO1)

        while True:
            if queue.size == 0:
                yield queue.arrived.wait()
            req = zones[0].request()
            yield req
            rec = queue.pop(self.env.now)
            rec.admitted_s = self.env.now
            self.env.process(run(rec, req))

    def _lockstep(self, wl: SplitPipeline, queue: PriorityQueue) -> Proc:
        slots: list[TaskRecord | None] = [None] * len(wl.stages)
        ready = [0.0] * len(wl.stages)
        while True:
            if queue.size == 0 and all(s is None for s in slots):
                yield queue.arrived.wait()
            if queue.size > 0:
                rec = queue.pop(self.env.now)
                rec.admitted_s = ready[0] = self.env.now
                slots[0] = rec
            procs = [self.env.process(self._stage(r, i, wl.stages[i], ready[i]))
                     for i, r in enumerate(slots) if r is not None]
            yield self.env.all_of(procs)
            done = slots[-1]
            if done is not None:
                self.env.process(self._cloud(done, wl.cloud, CO1))
            slots = [None, *slots[:-1]]
            ready = [0.0] + [r.stages[-1].end_s if r is not None else 0.0 for r in slots[1:]]

    def _replicated(self, wl: Replicated, queue: PriorityQueue) -> Proc:
        free = list(wl.zone)
        released = Signal(self.env)
        alone = [wl.alone_s(m) for m in range(len(free))]

        def run(rec: TaskRecord, server: int) -> Proc:
            cut = wl.cuts[server] if wl.cuts else -1
            srec = StageRecord(0, f"edge [0,{cut})" if cut >= 0 else "edge", self.env.now, self.env.now,
                               server=server)
            rec.stages.append(srec)
            yield self.env.timeout(wl.edge_s[server])
            srec.end_s, srec.compute_s = self.env.now, wl.edge_s[server]
            free[server] += wl.threads
            released.fire()
            yield from self._cloud(rec, wl.cloud[server], server)

        while True:
            if queue.size == 0:
                yield queue.arrived.wait()
            # the server that would finish it first; among equals the least loaded, then the lowest index
            fits = [m for m in range(len(free)) if free[m] >= wl.threads]
            server = min(fits, key=lambda m: (alone[m], -free[m], m)) if fits else None
            if server is None:
                yield released.wait()
                continue
            rec = queue.pop(self.env.now)
            rec.admitted_s, rec.server = self.env.now, server
            free[server] -= wl.threads
            self.env.process(run(rec, server))

    # driver ------------------------------------------------------------------------------------
    def _arrivals(self, tasks: Sequence[TaskSpec], queue: PriorityQueue) -> Proc:
        for t in sorted(tasks, key=lambda t: (t.arrival_s, t.id)):
            if t.arrival_s > self.env.now:
                yield self.env.timeout(t.arrival_s - self.env.now)
            rec = TaskRecord(t.id, t.model, t.priority, t.arrival_s)
            self.records[t.id] = rec
            queue.push(rec)

    def run(self, tasks: Sequence[TaskSpec], progress: Progress | None = None) -> SimResult:
        """Simulate until every task has its result; ``progress(finished)`` is called every
        ``PROGRESS_EVERY`` events and at the end (for a progress bar on long runs)."""
        self._check(tasks)
        ids = [t.id for t in tasks]
        for model, wl in self.workloads.items():
            mine = [t for t in tasks if t.model == model]
            queue = PriorityQueue(self.env, self.config.aging_s)
            self.env.process(self._arrivals(mine, queue))
            if isinstance(wl, Replicated):
                self.env.process(self._replicated(wl, queue))
            elif self.config.pipeline == "lockstep":
                self.env.process(self._lockstep(wl, queue))
            else:
                self.env.process(self._async(wl, queue))
        if progress is None:
            self.env.run()
        else:
            events = 0
            while True:
                try:
                    self.env.step()
                except simpy.core.EmptySchedule:
                    break
                events += 1
                if events % PROGRESS_EVERY == 0:
                    progress(len(self.finished))
            progress(len(self.finished))
        missing = sorted(set(ids) - self.finished)
        if missing:
            raise RuntimeError(f"simulation ended with {len(missing)} unfinished tasks, e.g. {missing[:5]}")
        return SimResult([self.records[i] for i in sorted(ids)])

    def _check(self, tasks: Sequence[TaskSpec]) -> None:
        ids = [t.id for t in tasks]
        if len(set(ids)) != len(ids):
            raise InvalidPlan("task ids must be unique")
        unknown = sorted({t.model for t in tasks} - set(self.workloads))
        if unknown:
            raise InvalidPlan(f"tasks for models with no workload: {', '.join(unknown)}")
        for wl in self.workloads.values():
            if isinstance(wl, Replicated) and wl.threads > max(wl.zone, default=0):
                raise InvalidPlan(f"{wl.model}: {wl.threads} threads per task but the largest zone has "
                                  f"{max(wl.zone, default=0)}")


def simulate(workloads: Mapping[str, Workload], tasks: Sequence[TaskSpec],
             config: SimConfig | None = None, progress: Progress | None = None) -> SimResult:
    """Run ``tasks`` through ``workloads`` (one per CNN) and return every task's record; ``progress``:
    :meth:`Simulation.run`."""
    return Simulation(workloads, config or SimConfig()).run(tasks, progress)
