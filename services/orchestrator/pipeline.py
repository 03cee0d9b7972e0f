"""The per-model pipelines (multi-task alternation, paper section 3.2) and the parallel runner.

* ``AsyncPipeline`` (default): one asyncio worker per stage, connected by one-slot queues; stage k of
  task t runs while stage k-1 of task t+1 does, each on its own sub-zone. Stage 0 claims the next task
  from Redis only when it is free, so the most urgent task waiting at that moment goes next.
  With dynamic batching, an *express lane* beside it claims the priority-1 tasks as they come and
  runs each through every step and the cloud at once, with its priority, so the executors and the
  cloud compute it on their urgent lanes (``ServiceSettings.urgent``) instead of after the batches
  queued in the pipeline's stages and one-slot queues.
* ``LockstepPipeline``: the paper's fig. 2 exactly: a global tick runs every busy stage at once and
  waits for all of them; then every task moves one stage on and stage 0 takes the next task.
* ``ParallelRunner`` (modes ``no-split`` and ``dads``): tasks run whole and concurrently, one per
  executor sub-zone; a task takes the sub-zone freed last (its executor is the warm one). With
  dynamic batching its express lane runs each priority-1 task at once on the least loaded executor's
  urgent lane, instead of waiting for a slot that batches hold.

The express lane is ``Runner``'s (``services.orchestrator.runner``).

The cloud (fully connected layers) is the last stage of each pipeline. A route with a different
number of stages (a new plan) starts only once the tasks of the previous one have left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from edgesplit.plan.modes import SERVING_MODES
from edgesplit.registry import Registry
from edgesplit.type_aliases import PipelineMode, ServingModeName
from services.orchestrator.engine import Job
from services.orchestrator.runner import Runner

log = logging.getLogger("edgesplit.orchestrator")
_STOP = None


class AsyncPipeline(Runner):
    """Stage workers connected by one-slot queues (module docstring)."""

    has_express = True

    async def run(self) -> None:
        carry: Job | None = None
        while True:
            carry = await self._generation(carry)

    async def _generation(self, first: Job | None) -> Job:
        """Run the pipeline for routes of one length; returns the first task of another length."""
        if first is None:
            first = await self.claim(block=True)
        assert first is not None
        n = len(first.route.steps)  # 0: the plan's edge-cloud cut sends the whole model to the cloud
        inbox: list[asyncio.Queue[Job | None]] = [asyncio.Queue(maxsize=1) for _ in range(n + 1)]
        holdover: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        tasks = [asyncio.create_task(self._head(first, n, inbox, holdover))]
        tasks += [asyncio.create_task(self._stage(k, inbox)) for k in range(1, n)]
        tasks += [asyncio.create_task(self._cloud(inbox[n])) for _ in range(self.settings.cloud_concurrency)]
        express = asyncio.create_task(self.express()) if self.express_on() else None
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in [*tasks, *([express] if express is not None else [])]:
                t.cancel()
        return holdover.result()

    async def _head(self, first: Job, n: int, inbox: list[asyncio.Queue[Job | None]],
                    holdover: asyncio.Future[Job]) -> None:
        job: Job | None = first
        while True:
            if job is None:
                job = await self.claim(block=True)
                assert job is not None
            if len(job.route.steps) != n:
                holdover.set_result(job)
                await self._stop(inbox, min(1, n))
                return
            if n == 0:
                await inbox[0].put(job)
            elif await self.step(job, 0, interlude=None if self.express_on() else
                                 lambda: self._urgent(n, inbox)):
                await inbox[1].put(job)
            job = None

    def takes_now(self, priority: int) -> bool:
        """``Runner.takes_now``, and any task when stage 0 is idle, waiting on an empty queue, and
        nothing was handed to it yet (without batching: with it, a partial batch may wait for more
        tasks)."""
        if super().takes_now(priority):
            return True
        return not self.draining and self.batches is None and self._idle and not self._handed

    async def _urgent(self, n: int, inbox: list[asyncio.Queue[Job | None]]) -> None:
        """Between two chunks of a batch's first step (``Runner.step``): the priority-1 tasks queued
        meanwhile take stage 0 now, so that an urgent task waits for one chunk, not for a whole batch."""
        while (job := await self.claim_urgent()) is not None:
            if len(job.route.steps) != n:  # a new plan: its generation starts after this one
                await self.give_back_job(job)
                return
            if await self.step(job, 0):
                await inbox[1].put(job)

    async def _stop(self, inbox: list[asyncio.Queue[Job | None]], k: int) -> None:
        """Tell the workers reading ``inbox[k]`` to end (one stop per cloud worker on the last one)."""
        for _ in range(self.settings.cloud_concurrency if k == len(inbox) - 1 else 1):
            await inbox[k].put(_STOP)

    async def _stage(self, k: int, inbox: list[asyncio.Queue[Job | None]]) -> None:
        while True:
            job = await inbox[k].get()
            if job is _STOP:
                await self._stop(inbox, k + 1)
                return
            if await self.step(job, k):
                await inbox[k + 1].put(job)

    async def _cloud(self, inbox: asyncio.Queue[Job | None]) -> None:
        while (job := await inbox.get()) is not _STOP:
            await self.cloud(job)


class LockstepPipeline(Runner):
    """All stages advance together on a global tick (the paper's fig. 2)."""

    async def run(self) -> None:
        slots: list[Job | None] = []
        held: Job | None = None
        tick = 0
        while True:
            new: Job | None = None
            if not any(slots):
                new, held = held or await self.claim(block=True), None
                assert new is not None
                slots = [None] * (len(new.route.steps) + 1)
            elif held is None:
                new = await self.claim(block=False)
                if new is not None and len(new.route.steps) + 1 != len(slots):
                    held, new = new, None
            slots = [new, *slots[:-1]]
            n = len(slots) - 1
            work: list[Callable[[], Awaitable[bool]]] = []
            for k, job in enumerate(slots):
                if job is not None:
                    work.append(self._bind(job, k, n, tick))
            results = await asyncio.gather(*(w() for w in work))
            busy = [k for k, job in enumerate(slots) if job is not None]
            for k, ok in zip(busy, results, strict=True):
                if not ok or k == n:
                    slots[k] = None
            tick += 1

    def _bind(self, job: Job, k: int, n: int, tick: int) -> Callable[[], Awaitable[bool]]:
        async def go() -> bool:
            job.tick = tick
            if k == n:
                await self.cloud(job)
                return True
            return await self.step(job, k)

        return go


class ParallelRunner(Runner):
    """Whole tasks run concurrently, one per executor sub-zone (no-split and DADS)."""

    has_express = True

    async def run(self) -> None:
        slots = self._slots()
        # Last freed, first taken: at low load the same warm executor serves task after task. With a
        # FIFO the tasks went round all executors, each finding its caches cold: on the testbed (8
        # hosts on one machine, one L3) No Split's single task took 299.5 ms on 8 hosts against
        # 209.4 ms on 1 (docs/BENCHMARKS.md, testbed). Under load every slot is busy either way.
        free: asyncio.LifoQueue[tuple[int, int]] = asyncio.LifoQueue()
        for slot in reversed(slots):  # the first slot on top
            free.put_nowait(slot)
        running: set[asyncio.Task[None]] = set()
        if self.express_on():  # urgent tasks beside the batches, on the executors' urgent lanes
            running.add(asyncio.create_task(self.express()))
        try:
            while True:
                held = await self._take(free)
                job = await self.claim(block=True, server=held[0])
                assert job is not None
                server, zone = self._warmest(free, held, job)
                t = asyncio.create_task(self._whole(job, zone, (server, zone), free))
                running.add(t)
                t.add_done_callback(running.discard)
        finally:
            for t in running:
                t.cancel()

    def _warmest(self, free: asyncio.LifoQueue[tuple[int, int]], held: tuple[int, int],
                 job: Job) -> tuple[int, int]:
        """The slot for a job claimed with ``held``: a slot freed while the claim waited for a task
        ran just now, so its executor is the warmer one; then that slot serves the job (its route
        moved to that executor) and ``held`` goes back."""
        top = self._pop_up(free)
        if top is None or top[0] == held[0]:
            if top is not None:
                free.put_nowait(top)
            return held
        free.put_nowait(held)
        job.route = self.plans.single(top[0])
        return top

    def _slots(self) -> list[tuple[int, int]]:
        """(server, sub-zone) pairs: min(threads, edge layers) sub-zones per executor, interleaved."""
        n_edge = self.engine.spec.n_edge
        per = [min(s.threads, n_edge) for s in self.plans.cluster.servers]
        return [(m, z) for z in range(max(per)) for m in range(len(per)) if z < per[m]]

    def _pop_up(self, free: asyncio.LifoQueue[tuple[int, int]]) -> tuple[int, int] | None:
        """The most recently freed slot on an executor that is up, or None; the slots of down
        executors stay where they were."""
        down: list[tuple[int, int]] = []
        found = None
        while found is None and not free.empty():
            slot = free.get_nowait()
            if slot[0] in self.engine.pool.down:
                down.append(slot)
            else:
                found = slot
        for slot in reversed(down):
            free.put_nowait(slot)
        return found

    async def _take(self, free: asyncio.LifoQueue[tuple[int, int]]) -> tuple[int, int]:
        """``_pop_up``, waiting for a slot to come back (or, when only down executors' slots are
        free, looking again every 50 ms)."""
        while (slot := self._pop_up(free)) is None:
            if free.empty():
                free.put_nowait(await free.get())
            else:
                await asyncio.sleep(0.05)
        return slot

    async def _whole(self, job: Job, zone: int, slot: tuple[int, int],
                     free: asyncio.LifoQueue[tuple[int, int]]) -> None:
        try:
            if not job.route.steps or await self.step(job, 0, subzone=zone):
                await self.cloud(job)
        finally:
            free.put_nowait(slot)


PIPELINES: Registry[PipelineMode, type[Runner]] = Registry(
    "pipeline", {"async": AsyncPipeline, "lockstep": LockstepPipeline})


def runner_class(mode: ServingModeName, pipeline: PipelineMode) -> type[Runner]:
    """The runner of a serving mode and pipeline kind: a planned mode's pipeline (``PIPELINES``), else
    tasks side by side, each whole on one executor."""
    return PIPELINES[pipeline] if SERVING_MODES[mode].planned else ParallelRunner
