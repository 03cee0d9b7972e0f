"""The orchestrator's state and background work: Redis, models, executors, pipelines, loops.

``Orchestrator.start`` loads the models (edge layers, for the merges), connects to Redis, and, when
``workers`` is on, builds one runner per model over the executors of the cluster description and
starts the loops: the runners, lease renewal, the reaper (expired leases back to the queue), the
timeout timer (queued tasks past their deadline become ``expired``), the executor and cloud probes,
and one pub/sub listener that wakes the runners on a submit and the long-polls on a result.

Every background loop runs under ``_loop``: an unexpected exception is logged, counted
(``loop_restarts_total``) and the loop started again after a backoff; a loop that keeps failing
makes liveness fail (``not_live``), so the kubelet (or ``edgesplit up``) restarts the process.
``stop`` drains: nothing more is claimed, the tasks in flight get ``drain_s`` to finish, and what is
left goes back to its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from edgesplit import wire
from edgesplit.errors import CapacityExceeded, EdgesplitError, InvalidInput, ModelNotFound, TaskNotFound
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.modes import SERVING_MODES
from edgesplit.queueing import QueueOrder
from services.common.channels import QUOTA_ORCHESTRATOR
from services.common.http import new_http_client
from services.common.models import Deployed, deployment_specs, load_deployed
from services.common.redisconn import redis_client
from services.orchestrator import images
from services.orchestrator.cloudgate import PriorityGate
from services.orchestrator.decode import Decoder
from services.orchestrator.engine import Engine
from services.orchestrator.metrics import Metrics
from services.orchestrator.notify import Notifier
from services.orchestrator.pipeline import runner_class
from services.orchestrator.plans import PlanSource, model_zones
from services.orchestrator.pool import ExecutorPool
from services.orchestrator.queue import Submitted, TaskQueue
from services.orchestrator.routes import Quotas, owned_models, owned_quotas
from services.orchestrator.runner import Runner
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.xfer import SliceLog

log = logging.getLogger("edgesplit.orchestrator")
MAX_WAIT_S = 60.0
LOOP_FAILURES_DEAD = 5  # failures in a row (each within LOOP_HEALTHY_S of its start): not live
LOOP_HEALTHY_S = 30.0  # a loop that ran this long before failing starts a new count


WIRE_DTYPE = np.dtype("<f4")


def stored_input(body: bytes, x: np.ndarray) -> bytes:
    """What Redis keeps of an accepted upload whose validated model input is ``x`` (1, C, H, W) float32.

    An NPY body already in the wire form (little-endian float32 of exactly that shape, as
    ``wire.encode`` and ``np.save`` write it) is stored as it came: its validation decoded it without a
    copy (``images.decode_npy``: header, shape, dtype, finite values), so it is not encoded again, and
    the pipeline decodes it once. Any other body (an image, another dtype, a (C, H, W) array) is stored
    as ``x`` encoded once."""
    if body[: len(wire.MAGIC)] == wire.MAGIC:
        head = wire.read_header(body)  # already checked by the decoder: a few hundred bytes parsed again
        if head.dtype == WIRE_DTYPE and head.shape == x.shape:
            return body
    return wire.encode(x)


@dataclass
class LoopState:
    """Health of one supervised background loop."""

    name: str
    failures: int = 0  # in a row
    last_error: str = ""
    running: bool = False


class QuotaClient(Protocol):
    """What ``push_quotas`` needs of an executor client (``services.executor.client.ExecutorClient``)."""

    async def put_quotas(self, quotas: Quotas, owner: str | None = None) -> Quotas: ...


async def push_quotas(client: QuotaClient, ours: Quotas, owned: set[str], server: int = 0) -> Quotas | None:
    """Replace the orchestrator's namespace of an executor's quotas (``QUOTA_ORCHESTRATOR``) with the
    entries of the ``owned`` models in ``ours``; the quotas in force afterwards (None when they could not
    be set: logged, the executor keeps its quotas). Other owners' namespaces (the allocator service's)
    are never read nor written, so a concurrent write of theirs cannot be lost."""
    try:
        mine = {m: q for m, q in ours.items() if m in owned and q}
        return await client.put_quotas(mine, QUOTA_ORCHESTRATOR)
    except CapacityExceeded as e:
        log.warning("executor %d keeps its quotas: %s", server, e)
    except EdgesplitError as e:
        log.warning("cannot set the quotas of executor %d: %s", server, e)
    return None


class Orchestrator:
    """Everything one orchestrator process holds (module docstring)."""

    def __init__(self, settings: OrchestratorSettings) -> None:
        self.settings = settings
        self.specs: dict[str, ModelSpec] = deployment_specs(settings.models, settings.model_files)
        self.metrics = Metrics()
        self.decoder = Decoder(images.ImageLimits(settings.image_max_scale, settings.image_min_side),
                               settings.decode_workers, settings.decode_queue, settings.decode_wait_s)
        self.redis = redis_client(settings.redis_url, password=settings.redis_password)
        self.queue = TaskQueue(self.redis, settings.prefix, settings.result_ttl_s, settings.max_claims,
                               settings.max_finished)
        self.models: dict[str, Deployed] = {}
        self.runners: dict[str, Runner] = {}
        self.pool: ExecutorPool | None = None
        self.cloud: Any = None
        self.cloud_up = False
        self._http = new_http_client(max(settings.slice_timeout_s, 30.0))
        self._loops: list[asyncio.Task[None]] = []
        self.loop_states: dict[str, LoopState] = {}
        self.notifier = Notifier(self.redis, settings.prefix, self._wake, self._task_ended)
        self._known_prios: dict[str, set[int]] = {m: set() for m in self.specs}
        self.slice_log = SliceLog(self.redis, settings.prefix)

    # --- life cycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per slice otherwise
        torch.set_num_threads(s.threads)
        self.models = await asyncio.to_thread(load_deployed, self.specs, "edge", s.weights_dir, s.seed)
        self._loop("pubsub", self.notifier.listen_forever)
        self._loop("timers", self._timers)
        if s.workers:
            await self._start_workers()

    async def _start_workers(self) -> None:
        from edgesplit.plan.cluster import load_cluster
        from services.cloud.client import CloudClient
        from services.executor.client import ExecutorClient

        s = self.settings
        if s.cluster_file is None:
            raise InvalidInput("cluster_file is required to run the pipelines (or set workers=false)")
        cluster = load_cluster(s.cluster_file)
        if any(srv.url is None for srv in cluster.servers) or cluster.cloud.url is None:
            raise InvalidInput(f"cluster file {s.cluster_file}: every executor and the cloud need a url")
        clients = [ExecutorClient(str(srv.url), s.token, s.slice_timeout_s, http=self._http)
                   for srv in cluster.servers]
        self.pool = ExecutorPool(cluster, clients, s.slice_timeout_s, s.breaker_failures,  # type: ignore[arg-type]
                                 s.breaker_window_s, s.breaker_open_s, s.overload_wait_s)
        self.cloud = CloudClient(str(cluster.cloud.url), s.cloud_token or s.token,
                                 timeout_s=s.slice_timeout_s, http=self._http)
        zones = model_zones(cluster, self.specs)
        # one for every model (they share the cloud), in the queue's order; with the express lane, more
        # calls for urgent tasks, which the cloud computes beside the batches
        gate = PriorityGate(s.cloud_concurrency, QueueOrder(s.aging_s), reserve=s.urgent_reserve())
        for name, spec in self.specs.items():
            plans = PlanSource(spec, zones[name], self.pool, self.queue, s.mode, s.split,
                               conv_groups=s.conv_groups)
            engine = Engine(spec, self.models[name].module, self.pool, self.cloud, plans, self.metrics,
                            s.max_retries, slice_log=self.slice_log, gate=gate)
            runner = runner_class(s.mode, s.pipeline)(engine, self.queue, plans, s, self.metrics)
            runner.on_finished = self.notifier.notify
            self.runners[name] = runner
            # a runner that breaks (a bug) gives its tasks back to the queue before it restarts
            self._loop(f"runner:{name}", runner.run, runner.give_back_all)
            self._loop(f"renew:{name}", runner.renew_forever)
        self.pool.on_change(lambda: self._spawn(self.apply_quotas(), keep=False))
        self._loop("probe", lambda: self.pool.probe_forever(s.probe_interval_s))  # type: ignore[union-attr]
        self._loop("slice-log", self.slice_log.flush_forever)
        self._loop("cloud-probe", self._probe_cloud)
        await self.apply_quotas()

    def _loop(self, name: str, run: Callable[[], Awaitable[None]],
              on_error: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``run()`` forever under supervision (module docstring)."""
        state = self.loop_states[name] = LoopState(name)

        async def supervised() -> None:
            while True:
                started = time.monotonic()
                state.running = True
                try:
                    await run()
                    raise RuntimeError("the loop returned")
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    state.running = False
                    healthy = time.monotonic() - started > LOOP_HEALTHY_S
                    state.failures = 1 if healthy else state.failures + 1
                    state.last_error = f"{type(e).__name__}: {e}"
                    self.metrics.loop_restarts.labels(name).inc()
                    log.exception("background loop %s failed (%d in a row); restarting it", name,
                                  state.failures)
                    if on_error is not None:
                        with contextlib.suppress(Exception):
                            await on_error()
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(state.failures, 6)))

        self._spawn(supervised())

    def not_live(self) -> str | None:
        """None when every background loop can run; else why not (liveness then fails)."""
        for state in self.loop_states.values():
            if state.failures >= LOOP_FAILURES_DEAD:
                return (f"background loop {state.name} failed {state.failures} times in a row: "
                        f"{state.last_error}")
        for task in self._loops:
            if task.done() and not task.cancelled():
                return "a background loop has ended"
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None], keep: bool = True) -> None:
        task = asyncio.create_task(coro)
        if keep:
            self._loops.append(task)

    async def drain(self, timeout_s: float) -> int:
        """Claim nothing more and wait up to ``timeout_s`` for the tasks in flight to end; returns how
        many are still in flight."""
        for runner in self.runners.values():
            runner.draining = True
        deadline = time.monotonic() + timeout_s
        left = sum(len(r.active) for r in self.runners.values())
        if left:
            log.info("draining: %d task(s) in flight get up to %.0f s to finish", left, timeout_s)
        while left and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            left = sum(len(r.active) for r in self.runners.values())
        return left

    async def stop(self) -> None:
        left = await self.drain(self.settings.drain_s)
        if left:
            log.warning("drain: %d task(s) still in flight go back to the queue", left)
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for runner in self.runners.values():
            await runner.give_back_all()
        if self.pool is not None:
            await self.pool.aclose()
        await self._http.aclose()
        await self.redis.aclose()
        self.decoder.close()

    # --- background loops ---------------------------------------------------------------------------

    async def _timers(self) -> None:
        """Reaper, timeout timer and retention, every ``reap_interval_s``; Redis errors are logged (once
        per outage) and retried. After an outage this process first renews the leases of its own tasks
        in flight, so that its reaper does not take back tasks it is still running."""
        failing = False
        while True:
            await asyncio.sleep(self.settings.reap_interval_s)
            try:
                if failing:
                    await self.queue.ping()
                    for runner in self.runners.values():
                        await runner.renew_all()
                for model in self.specs:
                    self._reaped(model, await self.queue.reap(model), await self.queue.expire(model))
                await self.queue.trim()
            except EdgesplitError as e:
                if not failing:  # once per outage, not every period
                    log.warning("reaper and timeout timer paused: %s", e)
                failing = True
                continue
            if failing:
                log.warning("reaper and timeout timer running again")
                failing = False

    def _reaped(self, model: str, requeued: int, expired: list[str]) -> None:
        if requeued:
            log.warning("%d task(s) of %s re-queued after their lease expired", requeued, model)
            self.metrics.failures.labels(model, "lease_expired").inc(requeued)
            self._wake(model)
        for _ in expired:
            self.metrics.tasks.labels(model, "expired").inc()
            self.metrics.failures.labels(model, "timeout").inc()

    def _task_ended(self, task_id: str) -> None:
        """A task got a final status (pub/sub ``done``): attempts of it still in flight here are stale."""
        for runner in self.runners.values():
            if runner.lose(task_id):
                log.info("task %s ended elsewhere; its attempt here stops", task_id)

    def _wake(self, model: str) -> None:
        runner = self.runners.get(model)
        if runner is not None:
            runner.wake.set()
            runner.urgent_wake.set()

    async def _probe_cloud(self) -> None:
        while True:
            self.cloud_up = bool(await self.cloud.ready())
            await asyncio.sleep(self.settings.probe_interval_s)

    async def apply_quotas(self) -> None:
        """Give each executor that is up the sub-zone threads of the plans made here.

        Only the orchestrator's own namespace of each executor's quotas is replaced (``push_quotas``):
        the quotas of models whose plan comes from Redis (set by the allocator service, its publisher,
        in its namespace) are kept. Nothing is sent when no model is planned here.
        """
        if self.pool is None or not SERVING_MODES[self.settings.mode].planned:
            return
        routes = {}
        for name, runner in self.runners.items():
            with contextlib.suppress(EdgesplitError):
                routes[name] = await runner.plans.route()
        owned = owned_models(routes)
        if not owned:
            return
        for m, quotas in owned_quotas(routes, self.pool.up).items():
            await push_quotas(self.pool.clients[m], quotas, owned, m)

    # --- what the API calls -------------------------------------------------------------------------

    def spec(self, model: str) -> ModelSpec:
        spec = self.specs.get(model)
        if spec is None:
            raise ModelNotFound(f"model {model!r} is not deployed; deployed models: {', '.join(self.specs)}")
        return spec

    def check_request(self, priority: int, timeout_s: float) -> None:
        s = self.settings
        if not 1 <= priority <= s.max_priority:
            raise InvalidInput(f"priority {priority} is out of range: 1 (most urgent) to {s.max_priority}")
        if not 0 < timeout_s <= s.max_timeout_s:
            raise InvalidInput(f"timeout {timeout_s} s is out of range: more than 0, at most "
                               f"{s.max_timeout_s} s")

    async def submit(self, model: str, body: bytes, priority: int, timeout_s: float | None,
                     idem_key: str | None = None) -> Submitted:
        """Validate and decode an upload, then queue it (module ``images`` says how bodies decode)."""
        spec = self.spec(model)
        timeout = self.settings.default_timeout_s if timeout_s is None else timeout_s
        self.check_request(priority, timeout)
        x = await self.decoder.to_input(body, spec)  # images on a bounded thread pool, off the loop
        return await self.enqueue(model, stored_input(body, x), priority, timeout, idem_key)

    async def enqueue(self, model: str, data: bytes, priority: int, timeout_s: float,
                      idem_key: str | None) -> Submitted:
        s = self.settings
        if idem_key is not None and not 0 < len(idem_key) <= 200:
            raise InvalidInput("Idempotency-Key must have 1 to 200 characters")
        fingerprint = hashlib.sha256(f"{model}|{priority}|{timeout_s}|".encode() + data).hexdigest()
        runner = self.runners.get(model)
        direct = runner is not None and runner.takes_now(priority)  # then claimed by the submit itself
        sub = await self.queue.submit(model, data, priority, timeout_s, max_queue=s.max_queue,
                                      aging_s=s.aging_s, idem_key=idem_key, fingerprint=fingerprint,
                                      retry_after_s=lambda: self._retry_after(model),
                                      claim_lease_s=s.lease_s if direct else None)
        if sub.claimed is not None and runner is not None:
            self._known_prios[model].add(priority)
            self.metrics.claimed_at_submit.labels(model).inc()
            await runner.adopt(sub.claimed)
        elif not sub.duplicate:
            self.metrics.pending.labels(model, str(priority)).inc()
            self._known_prios[model].add(priority)
            self._wake(model)  # this process's pipeline now, without waiting for the pub/sub message
        return sub

    def _retry_after(self, model: str) -> float:
        """Seconds until a full queue likely has room: a tenth of it drained at the recent e2e pace."""
        hist = self.metrics.e2e
        total = count = 0.0
        for metric in hist.collect():
            for sample in metric.samples:
                if sample.labels.get("model") == model and sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.labels.get("model") == model and sample.name.endswith("_count"):
                    count += sample.value
        mean = total / count if count else 1.0
        return float(min(60.0, max(1.0, mean * self.settings.max_queue / 10)))

    async def cancel(self, task_id: str) -> str:
        """Cancel a queued or running task (its slices in flight here are cancelled too); TaskNotFound
        or Conflict (already final) otherwise."""
        model = await self.queue.model_of(task_id)
        if model is None or model not in self.specs:
            raise TaskNotFound(f"no task {task_id!r} (unknown id, or its result expired)")
        status = await self.queue.cancel(model, task_id)
        self.metrics.tasks.labels(model, "cancelled").inc()
        self._task_ended(task_id)
        return status

    async def wait(self, task_id: str, wait_s: float, queued: bool = False) -> dict[str, Any]:
        """The task hash, after waiting up to ``wait_s`` seconds (at most 60) for a final status;
        ``queued``: this request has just queued it (``Notifier.wait``)."""
        return await self.notifier.wait(task_id, min(wait_s, MAX_WAIT_S), self.queue.get, queued)

    async def not_ready(self) -> str | None:
        """None when ready: models loaded, Redis answers, and with workers an executor and the cloud up."""
        if not self.models:
            return "loading model weights"
        try:
            await self.queue.ping()
        except EdgesplitError as e:
            return str(e)
        if self.settings.workers:
            if self.pool is None or not self.pool.up:
                return "no executor is up"
            if not self.cloud_up:
                return "the cloud does not answer"
        return None

    async def refresh_metrics(self) -> None:
        """Re-read the queued counts from Redis before a scrape."""
        for model in self.specs:
            with contextlib.suppress(EdgesplitError):
                counts = await self.queue.pending(model)
                self.metrics.set_pending(model, counts, self._known_prios[model])
                self._known_prios[model] |= set(counts)
        if self.pool is not None:
            self.metrics.executors_up.set(len(self.pool.up))
