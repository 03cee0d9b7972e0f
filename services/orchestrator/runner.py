"""What every runner of a model shares: claiming tasks, lease renewal, per-step checks, finishing.

A task is claimed only when a runner can start it at once (stage 0 free, or a free sub-zone), so the
queue, not the runner, holds waiting tasks and decides their order. Each claim holds a lease renewed
every ``lease_s / 3`` while the task is in flight; a task whose lease was lost (another orchestrator
took it after we stalled) is dropped at the next stage boundary, and a task whose deadline passed
while running ends ``expired`` there. Results are written with one atomic acknowledgement.

Attempts are fenced: each claim carries a fresh token (``Claimed.token``), and only the attempt whose
token the task still holds may renew, finish or publish (the scripts check it). The jobs in flight
are kept per attempt token, not per task id: after a lost lease the same process may run a stale and
the current attempt of one task side by side, and the stale one's end must not touch the current
one. A stale attempt's late result is dropped and counted (``stale_results_total``). When Redis is
away, a finished task's acknowledgement is retried (the job stays in flight, so its lease is renewed
as soon as Redis is back) for up to ``redis_outage_s``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from edgesplit import wire
from edgesplit.errors import EdgesplitError
from services.orchestrator.engine import Engine, Job, JobLost, TaskFailed
from services.orchestrator.metrics import Metrics
from services.orchestrator.plans import PlanSource
from services.orchestrator.queue import TaskQueue
from services.orchestrator.settings import OrchestratorSettings

log = logging.getLogger("edgesplit.orchestrator")


class Runner(abc.ABC):
    """Base of the pipelines of one model; subclasses implement ``run``."""

    def __init__(self, engine: Engine, queue: TaskQueue, plans: PlanSource, settings: OrchestratorSettings,
                 metrics: Metrics) -> None:
        self.engine = engine
        self.model = engine.model
        self.queue = queue
        self.plans = plans
        self.settings = settings
        self.metrics = metrics
        self.wake = asyncio.Event()
        self.active: dict[str, Job] = {}  # by attempt token (module docstring)
        self.draining = False
        self._claim_failing = False
        self._renew_failing = False
        # called with the finished task (id, record): wakes this process's waits on it
        self.on_finished: Callable[[str, dict[str, Any]], None] | None = None

    @abc.abstractmethod
    async def run(self) -> None:
        """Serve the model's queue until cancelled."""

    async def claim(self, block: bool, server: int | None = None) -> Job | None:
        """The next task as a job (None when ``block`` is False and the queue is empty)."""
        while True:
            self.wake.clear()  # before the claim: a submit after it sets the event again
            if self.draining:  # shutting down: claim nothing more, let the tasks in flight finish
                if not block:
                    return None
                await asyncio.sleep(0.5)
                continue
            try:
                job = await self._claim_once(server)
            except EdgesplitError as e:
                if not self._claim_failing:
                    log.warning("cannot claim %s tasks (retrying every 0.5 s): %s", self.model, e)
                self._claim_failing = True
                await asyncio.sleep(0.5)
                continue
            self._claim_failing = False
            if job is not None or not block:
                return job
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=0.5)

    async def _claim_once(self, server: int | None) -> Job | None:
        route = self.plans.single(server) if server is not None else await self.plans.route()
        task, expired, orphans = await self.queue.claim(self.model, self.settings.lease_s)
        for _ in expired:
            self._count("expired", "timeout")
        for tid in orphans:
            log.error("queued task %s of %s had no record; dropped from the queue", tid, self.model)
            self.metrics.orphans.labels(self.model).inc()
        if task is None:
            return None
        self.metrics.plan_version.labels(self.model).set(route.version)
        self.metrics.pending.labels(self.model, str(task.priority)).dec()
        now = time.time()
        self.metrics.queue_time.labels(self.model).observe(max(0.0, now - task.submitted))
        job = Job(task, torch.zeros(0), route, now)
        try:
            job.x = torch.from_numpy(np.array(wire.decode(task.input), dtype=np.float32))
        except EdgesplitError as e:  # validated at submit: only a corrupted record gets here
            await self._end(job, "failed", {"error": f"stored input is unreadable: {e}"}, "invalid")
            return None
        self.active[task.token] = job
        return job

    def jobs_of(self, task_id: str) -> list[Job]:
        """The attempts of ``task_id`` in flight here (two after a lost lease: the stale one, the current)."""
        return [j for j in self.active.values() if j.task.id == task_id]

    def lose(self, task_id: str) -> int:
        """Mark every attempt of ``task_id`` in flight here as lost (the task ended elsewhere, or was
        cancelled) and cancel its slices in flight; returns how many attempts that was."""
        jobs = self.jobs_of(task_id)
        for job in jobs:
            job.abandon()
        return len(jobs)

    def _count(self, status: str, reason: str | None = None) -> None:
        self.metrics.tasks.labels(self.model, status).inc()
        if reason is not None:
            self.metrics.failures.labels(self.model, reason).inc()

    async def renew_forever(self) -> None:
        """Renew the leases of the tasks in flight every ``lease_s / 3``."""
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            await self.renew_all()

    async def renew_all(self) -> bool:
        """Renew every lease in flight now; False when Redis did not answer (logged once per outage)."""
        for job in list(self.active.values()):
            try:
                if not await self.queue.renew(job.task, self.settings.lease_s):
                    job.abandon()
            except EdgesplitError as e:
                if not self._renew_failing:
                    log.warning("lease renewal failed: %s", e)
                self._renew_failing = True
                return False
        self._renew_failing = False
        return True

    async def _usable(self, job: Job) -> bool:
        """False (and the job ended) when its lease is lost or its deadline passed."""
        if job.lost:
            log.warning("task %s: lease lost, leaving it to its new owner", job.task.id)
            self.active.pop(job.task.token, None)
            self._count("lost", "lease_lost")
            return False
        if time.time() > job.task.deadline:
            await self._end(job, "expired", {"error": f"timed out while running, after {len(job.stages)} "
                                                       "stages"}, "timeout")
            return False
        return True

    async def step(self, job: Job, k: int, subzone: int | None = None) -> bool:
        """Run step k of a job; False if the job ended (failed, expired, lost)."""
        if not await self._usable(job):
            return False
        try:
            await self.engine.run_step(job, k, subzone)
        except JobLost:
            return await self._usable(job)
        except TaskFailed as e:
            await self._end(job, "failed", {"error": str(e)}, e.reason)
            return False
        except Exception as e:
            log.exception("task %s: stage %d", job.task.id, k)
            await self._end(job, "failed", {"error": f"internal error at stage {k}: {e!r}"}, "internal")
            return False
        return True

    async def cloud(self, job: Job) -> None:
        """Run the cloud part and acknowledge the task ``done`` (or ``failed``)."""
        if not await self._usable(job):
            return
        try:
            logits = await self.engine.run_cloud(job)
        except TaskFailed as e:
            await self._end(job, "failed", {"error": str(e)}, e.reason)
            return
        except Exception as e:
            log.exception("task %s: cloud", job.task.id)
            await self._end(job, "failed", {"error": f"internal error in the cloud stage: {e!r}"}, "internal")
            return
        await self._end(job, "done", {"logits": wire.encode(logits)})
        task = job.task
        self.metrics.e2e.labels(self.model, str(task.priority)).observe(time.time() - task.submitted)

    async def _end(self, job: Job, status: str, fields: dict[str, Any], reason: str | None = None) -> None:
        """Acknowledge the job's attempt with a final status (dropped and counted if it is stale)."""
        fields = {**fields, "timings": json.dumps(self._timings(job)), "started": repr(job.claimed_at),
                  "route": json.dumps({"source": job.route.source, "version": job.route.version,
                                       "cloud_from": job.route.cloud_from,
                                       "steps": [s.to_dict() for s in job.route.steps]})}
        try:
            record = await self._finish(job, status, fields)
        finally:
            self.active.pop(job.task.token, None)
        if record is None:
            log.warning("task %s: attempt %d no longer holds the task; its result (%s) is dropped",
                        job.task.id, job.task.attempts, status)
            self.metrics.stale.labels(self.model).inc()
            return
        if self.on_finished is not None:
            self.on_finished(job.task.id, record)
        self._count(status, reason if status != "done" else None)

    async def _finish(self, job: Job, status: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """``queue.finish``, retried while Redis is away (for up to ``redis_outage_s``); None when the
        attempt is stale or Redis stayed away (the lease then brings the task back)."""
        give_up = time.monotonic() + self.settings.redis_outage_s
        warned = False
        while True:
            try:
                return await self.queue.finish(job.task, status, fields)
            except EdgesplitError as e:  # Redis away: the job stays in flight, its lease renewed on return
                if time.monotonic() > give_up:
                    log.error("cannot acknowledge task %s (%s); its lease will bring it back", job.task.id, e)
                    return None
                if not warned:
                    log.warning("cannot acknowledge task %s yet (retrying): %s", job.task.id, e)
                    warned = True
                await asyncio.sleep(0.25)

    @staticmethod
    def _timings(job: Job) -> dict[str, Any]:
        return {"claimed": job.claimed_at, "stages": job.stages, "cloud": job.cloud, "retries": job.retries}

    async def give_back_all(self) -> None:
        """Return every task in flight to the queue (graceful shutdown)."""
        for job in list(self.active.values()):
            try:
                await self.queue.give_back(job.task)
            except EdgesplitError as e:
                log.warning("cannot give back task %s (its lease will expire): %s", job.task.id, e)
        self.active.clear()

