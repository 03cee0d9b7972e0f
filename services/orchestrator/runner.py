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

With ``max_batch`` > 1 a claim takes up to that many tasks at once (``services.orchestrator.batching``)
and they run as one ``BatchJob``: the steps and the cloud call carry all their rows; each task keeps
its own lease, token and record, and is registered in ``active`` under its own token. A member
cancelled, lost or expired on the way ends alone (the others go on), and at the end each live member
gets its own row of the logits.

The *express lane* (with batching, ``express_lane`` on, and a runner that has one: the async pipeline
and the whole-task runner of ``no-split`` and ``dads``): every priority-1 task is claimed as it comes,
by its submit when it can (:meth:`Runner.takes_now`), else by :meth:`Runner.express`, and runs whole at
once beside the batches, with its priority, so the executors and the cloud compute it on their urgent
lanes (``ServiceSettings.urgent``) instead of after the batches queued in the stages or holding every
executor slot.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import torch

from edgesplit import wire
from edgesplit.errors import EdgesplitError, Unavailable
from services.common.settings import ServiceSettings
from services.orchestrator.batching import BatchJob, BatchQueue, rows_within
from services.orchestrator.engine import Engine, Job, JobLost, TaskFailed
from services.orchestrator.metrics import Metrics
from services.orchestrator.plans import PlanSource
from services.orchestrator.queue import Claimed, TaskQueue
from services.orchestrator.routes import Route
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
        self.urgent_wake = asyncio.Event()  # set with ``wake``: the express lane's
        self.express_jobs: set[asyncio.Task[None]] = set()  # urgent jobs running on the express lane
        self.active: dict[str, Job] = {}  # by attempt token (module docstring)
        self.draining = False
        self._claim_failing = False
        self._renew_failing = False
        # called with the finished task (id, record): wakes this process's waits on it
        self.on_finished: Callable[[str, dict[str, Any]], None] | None = None
        s = settings
        self.batches = BatchQueue(queue, s.max_batch, s.max_queue_delay_s, s.max_priority,
                                  s.max_batch_by_priority) if s.max_batch > 1 else None
        self._wait_until: float | None = None  # a partial batch may wait until then (Unix seconds)
        self._urgent_at = -float("inf")  # when a priority-1 task was last claimed (monotonic seconds)
        # a batch's maps fit in an executor's request body (its default limit)
        self._rows_fit = rows_within(engine.spec, ServiceSettings.model_fields["max_body_bytes"].default)
        self._handed: list[Job] = []  # claimed by their submit (``adopt``): the next claims return them
        self._idle = False  # a claim(block=True) waits on an empty queue

    #: whether this runner has an express lane (module docstring); it runs only with batching and
    #: ``express_lane`` (:meth:`express_on`)
    has_express = False

    def express_on(self) -> bool:
        """Whether priority-1 tasks run on the express lane: with batching (``max_batch`` > 1),
        ``express_lane`` and a runner that has one."""
        return self.has_express and self.settings.express()

    def takes_now(self, priority: int) -> bool:
        """Whether a task of ``priority`` submitted now would start here at once; the submit then claims
        it in its own script (``TaskQueue.submit``'s ``claim_lease_s``) and hands it over with
        :meth:`adopt`: a priority-1 task when the express lane is on (it runs every one as it comes).
        The async pipeline adds a task that finds its stage 0 idle."""
        return not self.draining and self.express_on() and priority <= 1

    async def adopt(self, task: Claimed) -> None:
        """Start ``task``, claimed by a submit of this process because :meth:`takes_now` said so: an
        urgent task goes to the express lane at once; any other is what the next claim returns (its
        lease is renewed from now on, as any claimed task's)."""
        job = await self._adopted_job(task)
        if job is None:
            return
        if self.express_on() and task.priority <= 1:
            self._express_run(job)
            return
        self._handed.append(job)
        self.wake.set()

    def _express_run(self, job: Job) -> None:
        running = asyncio.create_task(self._run_whole(job))
        self.express_jobs.add(running)  # the loop holds only weak references to tasks
        running.add_done_callback(self.express_jobs.discard)

    async def express(self) -> None:
        """The express lane (module docstring): claim the priority-1 tasks at the queue's head as they
        come (those no submit of this process claimed itself), each claim one job run whole by
        :meth:`_run_whole` beside the batches. Runs until cancelled."""
        while True:
            self.urgent_wake.clear()  # before the claim: a submit after it sets the event again
            job = await self.claim_urgent()
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.urgent_wake.wait(), timeout=0.5)
                continue
            self._express_run(job)

    async def _run_whole(self, job: Job) -> None:
        """Every step of the job's route, then the cloud (step k on sub-zone k: an urgent slice
        computes on that sub-zone's urgent lane while its executor has bulk work)."""
        for k in range(len(job.route.steps)):
            if not await self.step(job, k):
                return
        await self.cloud(job)

    async def _adopted_job(self, task: Claimed) -> Job | None:
        """The job of a task claimed by its submit; when no route can be had now (no executor up),
        the task goes back to the queue, as if never claimed, for a later claim to retry."""
        try:
            route = await self.plans.route()
        except EdgesplitError as e:
            log.warning("task %s of %s: no route now (%s); queued instead", task.id, self.model, e)
            with contextlib.suppress(EdgesplitError):  # else its lease brings it back
                await self.queue.give_back(task)
            self.wake.set()
            return None
        return await self._job_of([task], route)

    @abc.abstractmethod
    async def run(self) -> None:
        """Serve the model's queue until cancelled."""

    async def claim(self, block: bool, server: int | None = None) -> Job | None:
        """The next task as a job (None when ``block`` is False and the queue is empty)."""
        while True:
            self.wake.clear()  # before the claim: a submit after it sets the event again
            if self._handed:
                return self._handed.pop(0)
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
            timeout = 0.5
            if self._wait_until is not None:  # a partial batch: claim again when it may go
                timeout = min(timeout, max(0.0005, self._wait_until - time.time()))
            self._idle = True
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=timeout)
            finally:
                self._idle = False

    def urgent_coming(self) -> bool:
        """Whether urgent tasks come: a priority-1 task claimed within ``urgent_window_s``."""
        return time.monotonic() - self._urgent_at <= self.settings.urgent_window_s

    def batch_limit(self) -> int:
        """The most tasks the next batch may hold (and ``max_batch``): as many as an executor's request
        body holds (``batching.rows_within``), and ``urgent_max_batch`` while urgent tasks come
        (``services.orchestrator.batching``)."""
        urgent = self.settings.urgent_max_batch if self.urgent_coming() else 0
        return min(self._rows_fit, urgent) if urgent > 0 else self._rows_fit

    async def claim_urgent(self) -> Job | None:
        """The priority-1 tasks at the head of the queue, claimed now as one job (batching only); None
        when the head is less urgent, nothing is queued, Redis does not answer or we are draining."""
        if self.batches is None or self.draining:
            return None
        try:
            return await self._claim_once(None, only=1)
        except EdgesplitError:
            return None

    async def _claim_once(self, server: int | None, only: int = 0) -> Job | None:
        route = self.plans.single(server) if server is not None else await self.plans.route()
        if self.batches is not None:
            got = await self.batches.claim(self.model, self.settings.lease_s, only,
                                           0 if only else self.batch_limit())
            tasks, expired, orphans = got.tasks, got.expired, got.orphans
            if not only:
                self._wait_until = got.wait_until
        else:
            task, expired, orphans = await self.queue.claim(self.model, self.settings.lease_s)
            tasks = [] if task is None else [task]
        for _ in expired:
            self._count("expired", "timeout")
        for tid in orphans:
            log.error("queued task %s of %s had no record; dropped from the queue", tid, self.model)
            self.metrics.orphans.labels(self.model).inc()
        for task in tasks:
            self.metrics.pending.labels(self.model, str(task.priority)).dec()
        return await self._job_of(tasks, route) if tasks else None

    async def _job_of(self, tasks: list[Claimed], route: Route) -> Job | None:
        """The job of tasks just claimed, on ``route`` (None when none of their inputs is usable);
        each is registered in ``active``."""
        self.metrics.plan_version.labels(self.model).set(route.version)
        now = time.time()
        rows: list[tuple[Claimed, torch.Tensor]] = []
        for task in tasks:
            if task.priority <= 1:
                self._urgent_at = time.monotonic()
            waited = max(0.0, now - task.submitted)
            self.metrics.queue_time.labels(self.model).observe(waited)
            self.metrics.queue_delay.labels(self.model, str(task.priority)).observe(waited)
            x = await self._input(Job(task, torch.zeros(0), route, now))
            if x is not None:
                rows.append((task, x))
        if not rows:
            return None
        self.metrics.batch_size.labels(self.model).observe(len(rows))
        if self.batches is None:
            job = Job(rows[0][0], rows[0][1], route, now)
        else:  # a batch, even of one, so that a cancel ends its member alone
            members = [t for t, _ in rows]
            job = BatchJob(members[0], torch.cat([x for _, x in rows]), route, now, members=members,
                           live={t.token: t for t in members})
        for task, _ in rows:
            self.active[task.token] = job
        return job

    async def _input(self, job: Job) -> torch.Tensor | None:
        """The task's stored input as a (1, C, H, W) tensor; None (and the task failed, alone) when it
        cannot be read or has another shape than the model's input."""
        want = (1, *self.engine.spec.input)
        try:
            x = np.array(wire.decode(job.task.input), dtype=np.float32)
        except EdgesplitError as e:  # validated at submit: only a corrupted record gets here
            await self._end(job, "failed", {"error": f"stored input is unreadable: {e}"}, "invalid")
            return None
        if x.shape != want:
            await self._end(job, "failed", {"error": f"stored input has shape {list(x.shape)}, model "
                                                     f"{self.model} expects {list(want)}"}, "invalid")
            return None
        return torch.from_numpy(x)

    @staticmethod
    def _task_of(job: Job, token: str) -> Claimed | None:
        """The attempt registered under ``token`` (None: a batch member that already ended)."""
        return job.live.get(token) if isinstance(job, BatchJob) else job.task

    def _attempts(self, task_id: str) -> list[tuple[str, Job]]:
        """(token, job) of the attempts of ``task_id`` in flight here."""
        return [(t, j) for t, j in self.active.items()
                if (task := self._task_of(j, t)) is not None and task.id == task_id]

    def jobs_of(self, task_id: str) -> list[Job]:
        """The attempts of ``task_id`` in flight here (two after a lost lease: the stale one, the current)."""
        return [j for _, j in self._attempts(task_id)]

    def lose(self, task_id: str) -> int:
        """Mark every attempt of ``task_id`` in flight here as lost (the task ended elsewhere, or was
        cancelled) and cancel its slices in flight (a batch's only once none of its members is left);
        returns how many attempts that was."""
        lost = self._attempts(task_id)
        for token, job in lost:
            self._lost(job, token)
        return len(lost)

    def _lost(self, job: Job, token: str) -> None:
        """The attempt ``token`` no longer holds its task: a single job stops at its next check; a batch
        member leaves the batch now (counted here) and the others go on."""
        if not isinstance(job, BatchJob):
            job.abandon()
            return
        task = job.live.get(token)
        if task is None:  # it ended meanwhile
            return
        log.warning("task %s: lease lost, leaving it to its new owner", task.id)
        self.active.pop(token, None)
        self._count("lost", "lease_lost")
        job.drop(token)

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
        for token, job in list(self.active.items()):
            task = self._task_of(job, token)
            if task is None:
                continue
            try:
                if not await self.queue.renew(task, self.settings.lease_s):
                    self._lost(job, token)
            except EdgesplitError as e:
                if not self._renew_failing:
                    log.warning("lease renewal failed: %s", e)
                self._renew_failing = True
                return False
        self._renew_failing = False
        return True

    async def _usable(self, job: Job) -> bool:
        """False (and the job ended) when its lease is lost or its deadline passed (a batch: when none
        of its members is left; a member past its deadline ends ``expired`` alone)."""
        if isinstance(job, BatchJob):
            for task in list(job.live.values()):
                if time.time() > task.deadline:
                    error = f"timed out while running, after {len(job.stages)} stages"
                    await self._end_task(job, task, "expired", {"error": error}, "timeout")
            return bool(job.live) and not job.lost
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

    async def step(self, job: Job, k: int, subzone: int | None = None,
                   interlude: Callable[[], Awaitable[None]] | None = None) -> bool:
        """Run step k of a job; False if the job ended (failed, expired, lost). With ``interlude``,
        ``batch_chunk`` > 0 and urgent tasks coming (one claimed within ``urgent_window_s``), a batch's
        step runs ``batch_chunk`` rows at a time and ``interlude`` runs between two chunks (the async
        pipeline's first step lets urgent tasks through there)."""
        if not await self._usable(job):
            return False
        chunk = self.settings.batch_chunk if self.urgent_coming() else 0
        try:
            if isinstance(job, BatchJob) and interlude is not None and 0 < chunk < job.x.shape[0]:
                await self._chunked_step(job, k, subzone, chunk, interlude)
            else:
                await self.engine.run_step(job, k, subzone)
        except JobLost:
            return await self._usable(job)
        except TaskFailed as e:
            if isinstance(job, BatchJob) and self._refused_batch(job, e):
                await self._one_by_one(job, k, subzone)
                return False
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
            if isinstance(job, BatchJob) and self._refused_batch(job, e):
                await self._one_by_one(job, len(job.route.steps), None)
                return
            await self._end(job, "failed", {"error": str(e)}, e.reason)
            return
        except Exception as e:
            log.exception("task %s: cloud", job.task.id)
            await self._end(job, "failed", {"error": f"internal error in the cloud stage: {e!r}"}, "internal")
            return
        rows = job.member_rows() if isinstance(job, BatchJob) else [(0, job.task)]
        for row, task in rows:  # each task its own row of the logits, (1, K)
            if isinstance(job, BatchJob) and task.token not in job.live:
                continue  # ended while the others were acknowledged
            await self._end_task(job, task, "done", {"logits": wire.encode(logits[row : row + 1])})
            self.metrics.e2e.labels(self.model, str(task.priority)).observe(time.time() - task.submitted)

    async def _chunked_step(self, job: BatchJob, k: int, subzone: int | None, chunk: int,
                            interlude: Callable[[], Awaitable[None]]) -> None:
        """``engine.run_step`` on consecutive chunks of the batch's rows, ``interlude`` between two: a
        batch's step then holds its sub-zone for one chunk at a time, not for the whole batch (a task
        arriving meanwhile waits at most one chunk: batches are not preemptible otherwise). One stage
        record for the whole step, its slices those of every chunk. Raises as ``run_step``."""
        xs, records = [], []
        for at in range(0, job.x.shape[0], chunk):
            if at:
                await interlude()
                if job.lost:
                    raise JobLost(job.task.id)
            part = Job(job.task, job.x[at : at + chunk], job.route, job.claimed_at, retries=job.retries,
                       tick=job.tick)
            await self.engine.run_step(part, k, subzone)
            job.retries = part.retries
            xs.append(part.x)
            records.append(part.stages[-1])
        job.x = torch.cat(xs)
        job.stages.append({**records[0], "end": records[-1]["end"], "chunks": len(records),
                           "slices": [s for r in records for s in r["slices"]],
                           "merge_s": sum(r["merge_s"] for r in records)})

    @staticmethod
    def _refused_batch(job: BatchJob, e: TaskFailed) -> bool:
        """True when an executor or the cloud refused a batch of several tasks (a 4xx: an input it does
        not take, a batch or body too large), as opposed to failing to answer."""
        cause = e.__cause__
        return (len(job.live) > 1 and isinstance(cause, EdgesplitError) and not isinstance(cause, Unavailable)
                and e.reason in ("invalid", "cloud"))

    async def _one_by_one(self, job: BatchJob, k: int, subzone: int | None) -> None:
        """Run each live member of a refused batch alone from step ``k`` (``len(steps)``: the cloud), so
        that what one task's input (or the batch's size) causes fails only the tasks it fails alone."""
        log.warning("a batch of %d %s tasks was refused at step %d; running them one by one",
                    len(job.live), self.model, k)
        for row, task in job.member_rows():
            if task.token not in job.live:  # lost while the others ran
                continue
            one = Job(task, job.x[row : row + 1].clone(), job.route, job.claimed_at, stages=list(job.stages),
                      retries=job.retries, tick=job.tick)
            job.live.pop(task.token, None)
            if self.active.get(task.token) is job:
                self.active[task.token] = one
            for s in range(k, len(job.route.steps)):
                if not await self.step(one, s, subzone):
                    break
            else:
                await self.cloud(one)

    async def _end(self, job: Job, status: str, fields: dict[str, Any], reason: str | None = None) -> None:
        """Acknowledge the job's attempt (a batch: each live member's) with a final status."""
        tasks = list(job.live.values()) if isinstance(job, BatchJob) else [job.task]
        for task in tasks:
            await self._end_task(job, task, status, fields, reason)

    async def _end_task(self, job: Job, task: Claimed, status: str, fields: dict[str, Any],
                        reason: str | None = None) -> None:
        """Acknowledge one attempt of the job with a final status (dropped and counted if it is stale)."""
        fields = {**fields, "timings": json.dumps(self._timings(job)), "started": repr(job.claimed_at),
                  "route": json.dumps({"source": job.route.source, "version": job.route.version,
                                       "cloud_from": job.route.cloud_from,
                                       "steps": [s.to_dict() for s in job.route.steps]})}
        try:
            record = await self._finish(task, status, fields)
        finally:
            self.active.pop(task.token, None)
            if isinstance(job, BatchJob):
                job.live.pop(task.token, None)
        if record is None:
            log.warning("task %s: attempt %d no longer holds the task; its result (%s) is dropped",
                        task.id, task.attempts, status)
            self.metrics.stale.labels(self.model).inc()
            return
        if self.on_finished is not None:
            self.on_finished(task.id, record)
        self._count(status, reason if status != "done" else None)

    async def _finish(self, task: Claimed, status: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """``queue.finish``, retried while Redis is away (for up to ``redis_outage_s``); None when the
        attempt is stale or Redis stayed away (the lease then brings the task back)."""
        give_up = time.monotonic() + self.settings.redis_outage_s
        warned = False
        while True:
            try:
                return await self.queue.finish(task, status, fields)
            except EdgesplitError as e:  # Redis away: the job stays in flight, its lease renewed on return
                if time.monotonic() > give_up:
                    log.error("cannot acknowledge task %s (%s); its lease will bring it back", task.id, e)
                    return None
                if not warned:
                    log.warning("cannot acknowledge task %s yet (retrying): %s", task.id, e)
                    warned = True
                await asyncio.sleep(0.25)

    @staticmethod
    def _timings(job: Job) -> dict[str, Any]:
        out = {"claimed": job.claimed_at, "stages": job.stages, "cloud": job.cloud, "retries": job.retries}
        if isinstance(job, BatchJob):
            out["batch"] = len(job.members)  # tasks run together (the stages' times are the batch's)
        return out

    async def give_back_job(self, job: Job) -> None:
        """Return one job's tasks to the queue now (not counting the attempt)."""
        tokens = [t for t, j in self.active.items() if j is job]
        for token in tokens:
            task = self._task_of(job, token)
            self.active.pop(token, None)
            if task is not None:
                with contextlib.suppress(EdgesplitError):  # else its lease brings it back
                    await self.queue.give_back(task)

    async def give_back_all(self) -> None:
        """Return every task in flight to the queue (graceful shutdown)."""
        for token, job in list(self.active.items()):
            task = self._task_of(job, token)
            if task is None:
                continue
            try:
                await self.queue.give_back(task)
            except EdgesplitError as e:
                log.warning("cannot give back task %s (its lease will expire): %s", task.id, e)
        self.active.clear()

