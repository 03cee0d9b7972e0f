"""Running one task's steps: slices sent concurrently, merged here, features sent to the cloud.

A ``Job`` is a claimed task on its way through the pipeline: its current activations ``x`` (the
input of the next step), its route and the timings recorded so far (wall-clock Unix seconds, so
intervals of different tasks can be compared). ``Engine.run_step`` runs step k of a job on sub-zone
k of the executors (the paper's section 3.2), retrying on a re-plan without the executors that failed
it, whether or not their circuit is open yet (a killed executor's kept-alive connections fail one by
one before the breaker opens); an attempt that found an executor already marked down sent nothing
and costs no retry;
``Engine.run_cloud`` sends the merged features to the cloud for the remaining layers, through the
orchestrator's priority gate (``cloudgate``): the most urgent waiting task's call goes first.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_incrementing
from torch import nn

from edgesplit.errors import EdgesplitError, Unavailable
from edgesplit.models.spec import ModelSpec
from edgesplit.split import crop_input, merge, slice_flops
from services.common import tracing
from services.orchestrator.cloudgate import PriorityGate
from services.orchestrator.metrics import Metrics
from services.orchestrator.pool import ExecutorFailed, ExecutorPool
from services.orchestrator.queue import Claimed
from services.orchestrator.routes import Route, Step
from services.orchestrator.xfer import SliceLog


class CloudInfer(Protocol):
    """What the engine needs of the cloud client (``services.cloud.client.CloudClient``)."""

    async def infer(self, model: str, features: np.ndarray, start: int | None = None,
                    priority: int | None = None) -> np.ndarray: ...


class Replanner(Protocol):
    async def retry(self, failed: Step, avoid: Collection[int] = ()) -> Step: ...


class TaskFailed(Exception):
    """A task cannot be completed; ``reason`` is the metrics label (executor, cloud, invalid...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Job:
    """A claimed task in the pipeline."""

    task: Claimed
    x: torch.Tensor
    route: Route
    claimed_at: float
    stages: list[dict[str, Any]] = field(default_factory=list)
    cloud: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    lost: bool = False
    tick: int | None = None
    calls: list[asyncio.Future[Any]] = field(default_factory=list)  # slice calls in flight

    def abandon(self) -> None:
        """This attempt no longer holds its task: stop at the next check and cancel the slices in
        flight (the executors drop a cancelled slice still waiting for its sub-zone)."""
        self.lost = True
        for call in self.calls:
            call.cancel()


class JobLost(Exception):
    """The job was abandoned (lease lost, task cancelled) while its slices were in flight."""


class Engine:
    """Steps and cloud calls of one model; shared by every runner of that model."""

    def __init__(self, spec: ModelSpec, module: nn.Sequential, pool: ExecutorPool, cloud: CloudInfer,
                 replanner: Replanner, metrics: Metrics, max_retries: int, cloud_retries: int = 2,
                 slice_log: SliceLog | None = None, gate: PriorityGate | None = None) -> None:
        self.spec = spec
        self.model = spec.name
        self.module = module
        self.pool = pool
        self.cloud = cloud
        self.replanner = replanner
        self.metrics = metrics
        self.max_retries = max_retries
        self.cloud_retries = cloud_retries
        self.slice_log = slice_log
        self.gate = gate if gate is not None else PriorityGate(1 << 30)

    async def run_step(self, job: Job, k: int, subzone: int | None = None) -> None:
        """Step k of the job's route on sub-zone k (or ``subzone``); updates ``job.x`` and timings."""
        step = job.route.steps[k]
        t0 = time.time()
        with tracing.TRACER.start_as_current_span(
                f"stage {k}", context=tracing.task_context(job.task.id),
                attributes={"edgesplit.task_id": job.task.id, "edgesplit.model": self.model,
                            "edgesplit.stage": k, "edgesplit.layers": [step.start, step.stop],
                            "edgesplit.strategy": step.strategy}) as span:
            failed: set[int] = set()  # executors that failed this step (avoided by its re-plans)
            unsent = 0  # attempts that found an executor of theirs already marked down
            while True:
                try:
                    record = await self._attempt(job, step, k if subzone is None else subzone)
                    break
                except ExecutorFailed as e:
                    failed.add(e.server)
                    if e.sent:
                        self.metrics.failures.labels(self.model, "executor").inc()
                        if job.retries >= self.max_retries:
                            raise TaskFailed("executor",
                                             f"stage {k}: {e} (after {job.retries} retries)") from e
                        job.retries += 1
                    else:  # marked down by another task's failure after this step was planned
                        unsent += 1
                        if unsent > len(self.pool.clients):
                            raise TaskFailed("executor", f"stage {k}: {e} (re-planned {unsent} times)") from e
                    try:
                        step = await self.replanner.retry(step, failed)
                    except EdgesplitError as err:
                        raise TaskFailed("executor", f"stage {k}: {e}; no re-plan possible: {err}") from err
            span.set_attribute("edgesplit.retries", job.retries)
        record.update(stage=k, start=t0, end=time.time(), retries=job.retries, tick=job.tick)
        job.stages.append(record)
        self.metrics.stage.labels(self.model, str(k)).observe(record["end"] - t0)

    async def _attempt(self, job: Job, step: Step, subzone: int) -> dict[str, Any]:
        slices = step.slices(self.spec)
        calls = []
        for server, sl in zip(step.servers, slices, strict=True):
            if sl.empty:
                continue
            x = crop_input(job.x, sl).contiguous().numpy()
            calls.append((server, sl, self._slice(server, sl, x, subzone, job.task.id, job.task.priority)))
        job.calls = [asyncio.ensure_future(c) for _, _, c in calls]
        try:
            results = await asyncio.gather(*job.calls, return_exceptions=True)
        finally:
            job.calls = []
        if job.lost:
            raise JobLost(job.task.id)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            lost = [r for r in failed if isinstance(r, ExecutorFailed)]
            first = next((r for r in lost if r.sent), lost[0] if lost else failed[0])
            if isinstance(first, EdgesplitError):
                raise TaskFailed("invalid", f"an executor refused a slice: {first}") from first
            raise first
        outputs: dict[int, torch.Tensor] = {}
        timings = []
        for (server, sl, _), res in zip(calls, results, strict=True):
            out, s0, s1 = res  # type: ignore[misc]
            outputs[id(sl)] = torch.from_numpy(out.output)
            transfer = max(0.0, s1 - s0 - out.wait_s - out.compute_s)
            timings.append({"server": server, "start": s0, "end": s1, "wait_s": out.wait_s,
                            "compute_s": out.compute_s, "transfer_s": transfer})
            self.metrics.slice.labels(self.model, str(server)).observe(s1 - s0)
            if self.slice_log is not None:
                nbytes = 4 * (math.prod(sl.in_shape(self.spec)) + math.prod(sl.out_shape(self.spec)))
                self.slice_log.add(self.pool.cluster.servers[server].name, nbytes, transfer, out.compute_s,
                                   slice_flops(self.spec, sl), out.workers)
        t_merge = time.time()
        full = [outputs[id(sl)] if id(sl) in outputs else job.x.new_zeros(sl.out_shape(self.spec))
                for sl in slices]
        job.x = merge(self.module, self.spec, slices, full)
        return {"layers": [step.start, step.stop], "strategy": step.strategy, "servers": list(step.servers),
                "parts": list(step.parts), "slices": timings, "merge_s": time.time() - t_merge}

    async def _slice(self, server: int, sl: Any, x: np.ndarray, subzone: int, task_id: str,
                     priority: int | None = None) -> Any:
        """One slice call in a span of its own (the executor's request continues its trace)."""
        with tracing.TRACER.start_as_current_span(
                f"slice {server}", attributes={"edgesplit.server": server, "edgesplit.subzone": subzone,
                                               "edgesplit.task_id": task_id}):
            return await self.pool.run(server, self.model, sl, x, subzone, task_id, priority)

    async def _cloud_call(self, features: np.ndarray, start: int, priority: int) -> np.ndarray:
        """The cloud's logits for ``features``, the input of layer ``start``; ``priority`` (the job's
        most urgent task's) orders the requests waiting at the cloud (``services.common.compute``).

        A DADS cut inside the edge part (``start < n_edge``) has the cloud run the remaining convs too
        (``POST /v1/infer/{model}?start=L``): the cut's map goes there as it is.
        """
        if start == self.spec.n_edge:
            return await self.cloud.infer(self.model, features, priority=priority)
        return await self.cloud.infer(self.model, features, start=start, priority=priority)

    async def run_cloud(self, job: Job) -> np.ndarray:
        """Send the features to the cloud (layers from ``route.cloud_from`` on); returns the logits (N, K),
        one row per image of the job (N = 1, or a batch's size)."""
        features = job.x.contiguous().numpy()
        start = job.route.cloud_from
        t0 = time.time()
        waited = 0.0
        # an unreachable cloud is tried cloud_retries more times, 0.2 s, 0.4 s... apart; a refusal is final
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Unavailable), stop=stop_after_attempt(self.cloud_retries + 1),
            wait=wait_incrementing(start=0.2, increment=0.2), reraise=True,
            after=lambda _state: self.metrics.failures.labels(self.model, "cloud").inc())
        with tracing.TRACER.start_as_current_span(
                "cloud", context=tracing.task_context(job.task.id),
                attributes={"edgesplit.task_id": job.task.id, "edgesplit.model": self.model,
                            "edgesplit.layers": [start, len(self.spec.layers)]}):
            try:
                async for attempt in retrying:
                    with attempt:
                        t_wait = time.time()
                        async with self.gate.slot(job.task.priority, job.task.submitted):
                            waited += time.time() - t_wait
                            logits = await self._cloud_call(features, start, job.task.priority)
            except Unavailable as e:
                raise TaskFailed("cloud", f"the cloud does not answer: {e}") from e
            except EdgesplitError as e:
                raise TaskFailed("cloud", f"the cloud refused the features: {e}") from e
        t1 = time.time()
        job.cloud = {"start": t0, "end": t1, "layers": [start, len(self.spec.layers)], "tick": job.tick,
                     "wait_s": waited}
        self.metrics.cloud.labels(self.model).observe(t1 - t0)
        return np.asarray(logits, dtype=np.float32).reshape(features.shape[0], -1)  # a batch: one row each
