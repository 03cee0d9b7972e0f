"""Resource sub-zones (paper section 3.2): per-(model, conv stage) pools of worker threads.

A sub-zone runs one slice at a time, in arrival order (an ``asyncio.Lock`` wakes its waiters FIFO and
lets no newcomer barge). With k workers it cuts the slice into k sub-slices along its units (output
rows for ``rows``, output rows of the partial sum for ``kernel-rows``, channels for ``channels``) and
worker i computes sub-slice i with ``compute_slice`` on a dedicated thread (torch at one intra-op
thread per worker); the parts are written into one output tensor. A band of a slice is itself a valid
slice, so the result is exact. Quotas (threads per sub-zone) may not sum above the capacity.

Quotas are kept in one namespace per writer (``services.common.channels.QUOTA_OWNERS``): the allocator
service and an orchestrator each replace only their own, so neither can overwrite the other's (no
read-merge-write). The table in force takes each model's entry from the first owner (in that order)
holding one; the capacity bounds the table in force.

Each sub-zone's queue is bounded: beyond ``queue_max`` slices waiting, a new one is refused at once
with ``Overloaded`` (503 and a ``Retry-After`` of the expected wait), which the orchestrator honours.
A slice cancelled while it waits (its caller went away) leaves the queue without being computed.

Urgent slices (``SubZone.run_urgent``) waiting for the sub-zone's urgent lane are computed together
(``services.common.compute.UrgentBatches``): every waiting urgent request for the same slice goes as
one batch, and each gets its rows back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from edgesplit.errors import CapacityExceeded, InvalidInput, ModelNotFound, Overloaded
from edgesplit.split import Slice, compute_slice
from services.common.channels import QUOTA_OPERATOR, QUOTA_OWNERS
from services.common.compute import (
    ComputeThread,
    ThreadPolicy,
    UrgentBatches,
    UrgentGate,
    UrgentLane,
    Waiting,
)
from services.common.models import Deployed
from services.common.settings import cpu_quota
from services.executor.work import Part, slice_flops, worker_parts

Quotas = dict[str, dict[int, int]]


_CORES_TTL_S = 1.0
_cores_read: list[float] = [-_CORES_TTL_S, 0.0]  # (when, cores) of the last reading


def usable_cores() -> int:
    """Cores the process's CPU quota lets it use at once, rounded up (at least 1; unbounded without a
    quota); re-read at most once a second, so an in-place resize takes effect. A sub-zone of more
    workers than this computes a slice with only this many: on a 0.2-core host, 5 workers (or 5
    intra-op threads) on one slice only add contention and took 378 ms where one took 295 ms."""
    now = time.monotonic()
    if now - _cores_read[0] > _CORES_TTL_S:
        quota = cpu_quota()
        _cores_read[:] = [now, float("inf") if quota is None else max(1.0, math.ceil(quota - 1e-9))]
    cores = _cores_read[1]
    return 1 << 30 if math.isinf(cores) else int(cores)


@dataclass(frozen=True)
class SliceRun:
    """One slice's result and costs: seconds queued and computing, distinct worker threads, FLOPs,
    when it held the sub-zone (``time.perf_counter`` seconds) and its ``share`` of the rows computed
    (below 1 when urgent requests were computed together: its FLOPs are its rows', its worker time
    ``compute_s * workers * share``)."""

    output: torch.Tensor
    wait_s: float
    compute_s: float
    workers: int
    flops: float
    started_at: float = 0.0
    done_at: float = 0.0
    share: float = 1.0


_UrgentItem = tuple[Deployed, Slice, torch.Tensor, float]  # a waiting urgent slice: what, on what, delay_s


class SubZone:
    """The k worker threads of one (model, stage); one slice at a time, FIFO."""

    def __init__(self, model: str, index: int, workers: int, halo_max: float | None = None,
                 queue_max: int = 1 << 30, bulk: ThreadPolicy | None = None,
                 gate: UrgentGate | None = None, urgent: ThreadPolicy | None = None) -> None:
        self.model, self.index, self.target, self.halo_max = model, index, workers, halo_max
        self.queue_max = queue_max
        self.bulk = bulk  # the workers' nice and policy
        self.gate = gate  # the process's: bulk workers pause while any urgent slice computes
        # k intra-op threads per job (the job sets them); the gate is closed while it computes
        self.urgent_lane = UrgentLane(1, f"es-{model}-{index}-urgent", gate=gate, policy=urgent)
        self._urgent: UrgentBatches[_UrgentItem] = UrgentBatches(self._urgent_batch)
        self.last_compute_s = 0.0
        # whether any sub-zone of this process has bulk work (set by ``ZonePool``); None: this one's only
        self.process_busy: Callable[[], bool] | None = None
        self.lock = asyncio.Lock()
        self.threads: list[ComputeThread] = []
        self.queued = 0
        self.busy = 0
        self.last_workers = 0
        self._cuts: dict[tuple[Slice, int, int], tuple[list[Part], float, float]] = {}

    def working(self) -> bool:
        """Whether bulk work runs or waits in this sub-zone."""
        return self.lock.locked() or self.queued > 0

    def has_bulk(self) -> bool:
        """Whether bulk work runs or waits here, or (with ``process_busy``) anywhere in the process."""
        return self.working() or (self.process_busy is not None and self.process_busy())

    def _resize(self) -> None:
        while len(self.threads) > self.target:
            self.threads.pop().stop()
        while len(self.threads) < self.target:
            self.threads.append(ComputeThread(1, f"es-{self.model}-{self.index}-{len(self.threads)}",
                                              self.bulk, self.gate))

    async def run(self, deployed: Deployed, sl: Slice, x: torch.Tensor, delay_s: float = 0.0,
                  urgent: bool = False) -> SliceRun:
        """Wait for the sub-zone (FIFO), then compute ``sl`` on ``x`` with its k workers; ``urgent``:
        on the urgent lane instead (:meth:`run_urgent`) while there is bulk work beside it, in this
        sub-zone or another of the process (``UrgentLane.wanted``); a quiet process takes it at once on
        the sub-zone's workers. (Only this sub-zone's work counted before: in ``no-split``, where a
        task takes a free sub-zone, an urgent task then ran on bulk threads under ``SCHED_IDLE``
        beside a batch in the other sub-zone, no faster than that batch's own threads.)"""
        if urgent and self.urgent_lane.wanted(self.has_bulk()):
            return await self.run_urgent(deployed, sl, x, delay_s)
        arrived = time.perf_counter()
        if self.queued >= self.queue_max:
            wait = (self.queued + 1) * max(self.last_compute_s, 0.01)
            raise Overloaded(f"sub-zone {self.index} of {self.model} has {self.queued} slices waiting "
                             f"(at most {self.queue_max}); retry in {wait:.2f} s", wait)
        self.queued += 1
        try:
            await self.lock.acquire()
        finally:
            self.queued -= 1
        try:
            started = time.perf_counter()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            self._resize()
            k = min(len(self.threads), usable_cores())
            parts, flops, whole = self._cut(deployed, sl, k, x.shape[0])
            intra = self.halo_max is not None and flops > (1.0 + self.halo_max) * whole
            if intra:
                parts, flops = [Part(sl, 2, 0)], whole
            out, idents = await self._compute(deployed, sl, x, parts, k if intra else 1)
            done = time.perf_counter()
        finally:
            self.lock.release()
            if not urgent:
                self.urgent_lane.bulk_done()
        self.last_workers = k if intra else len(set(idents))
        self.last_compute_s = done - started
        return SliceRun(out, started - arrived, done - started, self.last_workers, flops, started, done)

    async def run_urgent(self, deployed: Deployed, sl: Slice, x: torch.Tensor,
                         delay_s: float = 0.0) -> SliceRun:
        """An urgent slice (``ServiceSettings.urgent``) on the sub-zone's urgent lane
        (``services.common.compute.UrgentLane``): a thread of its own at ``urgent_nice`` with the
        zone's k intra-op threads, beside the bulk workers (``ThreadPolicy``: niced, SCHED_IDLE)
        rather than behind the slices queued for them. Urgent slices among themselves: one batch at
        a time, the ones waiting for the same slice computed together (module docstring). A request
        cancelled while it waits is left out."""
        key = (sl, tuple(x.shape[1:]))
        run: SliceRun = await self._urgent.run(key, x.shape[0], (deployed, sl, x, delay_s))
        return run

    async def _urgent_batch(self, group: list[Waiting[_UrgentItem]]) -> list[SliceRun]:
        """One urgent batch on the lane; each request's rows and its share of the work."""
        deployed, sl, _, delay_s = group[0].item
        started = time.perf_counter()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        k = max(1, min(self.target, usable_cores()))
        x = group[0].item[2] if len(group) == 1 else torch.cat([w.item[2] for w in group])
        job = _whole_job(deployed.module, deployed, sl, x, k)
        out, _ = await asyncio.wrap_future(self.urgent_lane.submit(job))
        done = time.perf_counter()
        # FLOPs: the whole slice's, remembered as the bulk path's
        return [SliceRun(rows, started - w.arrived, done - started, k, self._cut(deployed, sl, 1, w.rows)[2],
                         started, done, w.rows / x.shape[0])
                for w, rows in zip(group, UrgentBatches.rows(out, group), strict=True)]

    def _cut(self, deployed: Deployed, sl: Slice, workers: int,
             batch: int) -> tuple[list[Part], float, float]:
        """The slice's parts for ``workers`` workers, their FLOPs and the whole slice's; remembered per
        (slice, workers, batch), since a plan sends the same slices again and again."""
        key = (sl, workers, batch)
        cut = self._cuts.get(key)
        if cut is None:
            parts = worker_parts(deployed.spec, sl, workers)
            flops = sum(slice_flops(deployed.spec, p.slice, batch) for p in parts)
            whole = slice_flops(deployed.spec, sl, batch) if len(parts) > 1 else flops
            if len(self._cuts) >= 256:
                self._cuts.clear()
            cut = self._cuts[key] = (parts, flops, whole)
        return cut

    async def _compute(self, deployed: Deployed, sl: Slice, x: torch.Tensor,
                       parts: list[Part], intra_threads: int = 1) -> tuple[torch.Tensor, list[int]]:
        module, spec = deployed.module, deployed.spec
        if len(parts) == 1:
            jobs = [self.threads[0].submit(_whole_job(module, deployed, sl, x, intra_threads))]
        else:
            out = x.new_empty(sl.out_shape(spec, x.shape[0]))
            jobs = [w.submit(_part_job(module, deployed, p, x, out)) for w, p in zip(self.threads, parts,
                                                                                   strict=False)]
        self.busy = len(jobs)
        gathered = asyncio.gather(*(asyncio.wrap_future(j) for j in jobs))
        try:
            results = await asyncio.shield(gathered)
        except asyncio.CancelledError:
            # the threads run on regardless: keep the sub-zone busy until they finish
            with contextlib.suppress(Exception):
                await gathered
            raise
        finally:
            self.busy = 0
        if len(parts) == 1:
            return results[0][0], [results[0][1]]
        return out, [r[1] for r in results]

    def stop(self) -> None:
        for w in self.threads:
            w.stop()
        urgent = self.urgent_lane.stop()
        for w in [*self.threads, *([urgent] if urgent is not None else [])]:
            w.join(10.0)
        self.threads.clear()


def _whole_job(module: torch.nn.Sequential, deployed: Deployed, sl: Slice, x: torch.Tensor,
               threads: int) -> Callable[[], tuple[torch.Tensor, int]]:
    """The whole slice on this worker with ``threads`` torch intra-op threads (back to 1 after)."""

    def job() -> tuple[torch.Tensor, int]:
        if threads <= 1:
            return compute_slice(module, deployed.spec, sl, x), threading.get_ident()
        torch.set_num_threads(threads)  # this thread's OpenMP team only (services.common.compute)
        try:
            return compute_slice(module, deployed.spec, sl, x), threading.get_ident()
        finally:
            torch.set_num_threads(1)

    return job


def _part_job(module: torch.nn.Sequential, deployed: Deployed, part: Part, x: torch.Tensor,
              out: torch.Tensor) -> Callable[[], tuple[None, int]]:
    def job() -> tuple[None, int]:
        y = compute_slice(module, deployed.spec, part.slice, part.crop(x))
        out.narrow(part.dim, part.at, y.shape[part.dim]).copy_(y)
        return None, threading.get_ident()

    return job


class ZonePool:
    """All sub-zones of one executor and their quotas; ``capacity`` threads in total.

    ``quotas[model][stage]`` is the number of worker threads of that sub-zone; a sub-zone without a
    quota has 1. The quotas in force are merged from one table per owner (module docstring); their
    sum may not exceed ``capacity`` (CapacityExceeded, 409), a number or a function giving it now (the
    CPU limit, which an in-place pod resize changes).
    """

    def __init__(self, capacity: int | Callable[[], int], n_edge: Mapping[str, int],
                 halo_max: float | None = None, queue_max: int = 1 << 30, bulk: ThreadPolicy | None = None,
                 gate: UrgentGate | None = None, urgent: ThreadPolicy | None = None) -> None:
        self._capacity = capacity
        self.bulk, self.urgent = bulk, urgent
        self.gate = gate
        self.halo_max = halo_max
        self.queue_max = queue_max
        self._n_edge = dict(n_edge)
        self._owned: dict[str, Quotas] = {}
        self._quotas: Quotas = {}
        self.subzones: dict[tuple[str, int], SubZone] = {}

    @property
    def capacity(self) -> int:
        return self._capacity() if callable(self._capacity) else self._capacity

    def quotas(self) -> Quotas:
        """The quotas in force, ``{model: {stage: threads}}``."""
        return {m: dict(q) for m, q in self._quotas.items()}

    def owned_quotas(self) -> dict[str, Quotas]:
        """Every owner's table as that owner set it, ``{owner: {model: {stage: threads}}}``."""
        return {o: {m: dict(q) for m, q in t.items()} for o, t in self._owned.items() if t}

    def check_stage(self, model: str, index: int) -> None:
        """Raise unless ``index`` can be a sub-zone (stage) of the deployed ``model``."""
        if model not in self._n_edge:
            raise ModelNotFound(f"model {model!r} is not deployed here; deployed: {', '.join(self._n_edge)}")
        if not 0 <= index < self._n_edge[model]:
            raise InvalidInput(f"sub-zone {index} out of range: model {model} has sub-zones "
                               f"[0, {self._n_edge[model]}) (at most one per edge layer)")

    def set_quotas(self, quotas: Quotas, owner: str | None = None) -> Quotas:
        """Replace ``owner``'s table (None: every table, the given one kept as the operator's); sub-zones
        resize before their next slice. Returns the quotas in force."""
        if owner is not None and owner not in QUOTA_OWNERS:
            raise InvalidInput(f"unknown quota owner {owner!r}; expected one of {', '.join(QUOTA_OWNERS)}")
        for model, stages in quotas.items():
            for index, threads in stages.items():
                self.check_stage(model, index)
                if threads < 1:
                    raise InvalidInput(f"quota of {model} sub-zone {index} is {threads}; expected >= 1")
        table = {m: dict(q) for m, q in quotas.items() if q}
        owned = {QUOTA_OPERATOR: table} if owner is None else {**self._owned, owner: table}
        in_force = _in_force(owned)
        total = sum(sum(q.values()) for q in in_force.values())
        capacity = self.capacity
        if total > capacity:
            raise CapacityExceeded(f"quotas total {total} threads, above this executor's capacity of "
                                   f"{capacity} threads")
        self._owned, self._quotas = owned, in_force
        for (model, index), zone in self.subzones.items():
            zone.target = self._quotas.get(model, {}).get(index, 1)
        return self.quotas()

    def subzone(self, model: str, index: int) -> SubZone:
        self.check_stage(model, index)
        zone = self.subzones.get((model, index))
        if zone is None:
            zone = SubZone(model, index, self._quotas.get(model, {}).get(index, 1), self.halo_max,
                           self.queue_max, self.bulk, self.gate, self.urgent)
            zone.process_busy = self.busy
            self.subzones[(model, index)] = zone
        return zone

    def busy(self) -> bool:
        """Whether any sub-zone runs or queues bulk work, or ended some within its lane's ``quiet_s``
        (an urgent slice then takes an urgent lane)."""
        return any(z.working() or z.urgent_lane.bulk_recent() for z in self.subzones.values())

    async def run(self, deployed: Deployed, index: int, sl: Slice, x: torch.Tensor,
                  delay_s: float = 0.0, urgent: bool = False) -> SliceRun:
        return await self.subzone(deployed.spec.name, index).run(deployed, sl, x, delay_s, urgent)

    def shutdown(self) -> None:
        for zone in self.subzones.values():
            zone.stop()


def _in_force(owned: Mapping[str, Quotas]) -> Quotas:
    """Each model's entry from the first owner of ``QUOTA_OWNERS`` that holds one."""
    out: Quotas = {}
    for owner in reversed(QUOTA_OWNERS):
        out.update(owned.get(owner, {}))
    return {m: dict(q) for m, q in out.items()}
