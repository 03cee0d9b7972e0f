"""The Redis task queue: priority queues per model, leases, reaper, timeouts, idempotency, TTLs.

Every state change is one Lua script (``scripts.py``), so several orchestrator replicas and a crash
at any point leave Redis consistent: a task is either queued (in ``q``), running (in ``inflight``
with a lease the worker renews) or finished (status done/failed/expired, the hash expiring after
``result_ttl_s``). A worker that dies stops renewing; the reaper puts its tasks back in the queue
with their original score. Redis errors surface as ``Unavailable`` (HTTP 503). The order of the queue
is ``edgesplit.queueing.QueueOrder`` (priority, arrival, aging), whose Lua the submit script runs.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from edgesplit.errors import Conflict, QueueFull, TaskNotFound, Unavailable
from edgesplit.queueing import QueueOrder
from services.common.channels import plan_key
from services.orchestrator import scripts

T = TypeVar("T")
TERMINAL = frozenset({"done", "failed", "expired", "rejected", "cancelled"})
STATUSES = ("queued", "running", *sorted(TERMINAL))


@dataclass(frozen=True)
class Claimed:
    """A task taken from the queue by one worker; ``token`` proves the lease is still ours."""

    id: str
    model: str
    priority: int
    submitted: float
    deadline: float
    attempts: int
    input: bytes
    token: str


class Submitted(NamedTuple):
    """Outcome of a submit: the task id, whether it was an idempotent repeat, tasks now queued at
    that priority, and the task as claimed by the submit itself (``TaskQueue.submit``'s ``claim_lease_s``)."""

    id: str
    duplicate: bool
    pending_at_priority: int
    claimed: Claimed | None = None


class ClaimResult(NamedTuple):
    """What one claim found: the task taken (None when none), ids that expired while queued, and
    queued ids without a task record (dropped; counted by the caller)."""

    task: Claimed | None
    expired: list[str]
    orphans: list[str]


def new_task_id() -> str:
    """Time-ordered id (ns clock in hex + random), so ids sort by creation like UUIDv7."""
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:12]}"


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except (RedisConnectionError, RedisTimeoutError, OSError) as e:
        raise Unavailable(f"Redis does not answer: {e}") from e
    except RedisError as e:
        raise Unavailable(f"Redis error: {e}") from e


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """A task hash as Redis returns it: names and values decoded, ``logits`` kept as bytes, no input."""
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name = _s(k)
        if name != "input":
            out[name] = v if name == "logits" else _s(v)
    return out


class TaskQueue:
    """Async access to the queue of every model under one key prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str = "es:", result_ttl_s: int = 3600,
                 max_attempts: int = 5, max_finished: int = 100_000) -> None:
        self.r = client
        self.p = prefix
        self.ttl = int(result_ttl_s)
        self.max_attempts = max_attempts
        self.max_finished = max_finished
        self._submit = client.register_script(scripts.SUBMIT)
        self._claim = client.register_script(scripts.CLAIM)
        self._renew = client.register_script(scripts.RENEW)
        self._finish = client.register_script(scripts.FINISH)
        self._reap = client.register_script(scripts.REAP)
        self._give_back = client.register_script(scripts.GIVE_BACK)
        self._expire = client.register_script(scripts.EXPIRE)
        self._cancel = client.register_script(scripts.CANCEL)
        self._trim = client.register_script(scripts.TRIM)

    def key(self, kind: str, name: str) -> str:
        """Full Redis key, e.g. ``key("q", "alexnet-paper")`` -> ``es:q:alexnet-paper``."""
        return f"{self.p}{kind}:{name}"

    async def ping(self) -> bool:
        return bool(await _guard(self.r.ping()))

    async def submit(self, model: str, data: bytes, priority: int, timeout_s: float, *,
                     max_queue: int, aging_s: float = 0.0, idem_key: str | None = None,
                     fingerprint: str = "", retry_after_s: float | Callable[[], float] = 1.0,
                     claim_lease_s: float | None = None) -> Submitted:
        """Queue one task in ``QueueOrder(aging_s)``. Raises QueueFull (429) beyond ``max_queue`` queued
        tasks of that model and Conflict (409) when ``idem_key`` was used for a different request.
        ``retry_after_s`` (or a function giving it, called only for a full queue) is the QueueFull's
        Retry-After.

        ``claim_lease_s``: the caller starts the task at once if it is the one a claim would take next
        (the queue is empty or holds only tasks that come after it); it is then claimed in the same
        script, with a lease of that many seconds, and returned as ``Submitted.claimed`` (one Redis
        round trip instead of a submit, a wake-up and a claim; ``scripts.SUBMIT``)."""
        now = time.time()
        tid = new_task_id()
        token = uuid.uuid4().hex if claim_lease_s is not None else ""
        idem = self.key("idem", idem_key) if idem_key else ""
        keys = [self.key("q", model), self.key("dl", model), self.key("pending", model), f"{self.p}seq",
                f"{self.p}epoch", idem, self.key("inflight", model)]
        args: list[str | bytes | int] = [
            self.p, tid, model, priority, repr(now), repr(now + timeout_s), max_queue, data,
            self.ttl + int(timeout_s) + 1, fingerprint, repr(timeout_s), *QueueOrder(aging_s).lua_args(),
            token, repr(claim_lease_s or 0.0)]
        out = [_s(v) for v in await _guard(self._submit(keys=keys, args=args))]
        if out[0] == "claimed":
            claimed = Claimed(tid, model, priority, now, now + timeout_s, 1, data, token)
            return Submitted(tid, False, 0, claimed)
        if out[0] == "full":
            if callable(retry_after_s):
                retry_after_s = retry_after_s()
            raise QueueFull(f"queue of {model} is full ({out[1]} tasks queued, max {max_queue}); "
                            f"retry in {retry_after_s:.0f} s", retry_after_s)
        if out[0] == "conflict":
            raise Conflict(f"Idempotency-Key {idem_key!r} was already used for task {out[1]} with a "
                           "different request")
        if out[0] == "duplicate":
            return Submitted(out[1], True, 0)
        return Submitted(out[1], False, int(out[2]))

    async def claim(self, model: str, lease_s: float, token: str | None = None) -> ClaimResult:
        """Take the best queued task into ``inflight`` with a lease of ``lease_s`` seconds, under a
        fresh attempt ``token`` (the fence: only this attempt may renew or finish it).

        Returns the task (None when the queue is empty), the ids found expired on the way and the
        queued ids found without a record (dropped).
        """
        token = token or uuid.uuid4().hex
        keys = [self.key("q", model), self.key("inflight", model), self.key("dl", model),
                self.key("pending", model)]
        out = await _guard(self._claim(keys=keys, args=[self.p, repr(time.time()), repr(lease_s), token,
                                                        self.ttl]))
        if not out:
            return ClaimResult(None, [], [])
        n_expired = int(_s(out[6]))
        expired = [_s(v) for v in out[7 : 7 + n_expired]]
        orphans = [_s(v) for v in out[7 + n_expired :]]
        if not out[0]:
            return ClaimResult(None, expired, orphans)
        tid, prio, sub, dl, att = (_s(v) for v in out[:5])
        task = Claimed(tid, model, int(prio), float(sub), float(dl), int(att), bytes(out[5]), token)
        return ClaimResult(task, expired, orphans)

    async def renew(self, task: Claimed, lease_s: float) -> bool:
        """Extend a lease; False when the task is no longer ours (re-queued by the reaper)."""
        return bool(await _guard(self._renew(keys=[self.key("inflight", task.model)],
                                             args=[self.p, task.id, task.token, repr(time.time()),
                                                   repr(lease_s)])))

    async def finish(self, task: Claimed, status: str,
                     fields: Mapping[str, str | bytes]) -> dict[str, Any] | None:
        """Acknowledge a task with a terminal status and its result fields. Returns the finished task
        as :meth:`get` gives it (read in the same script), or None if the lease was lost."""
        flat: list[str | bytes] = []
        for k, v in fields.items():
            flat += [k, v]
        args = [self.p, task.id, task.token, status, repr(time.time()), self.ttl, *flat]
        out = await _guard(self._finish(keys=[self.key("inflight", task.model)], args=args))
        if not isinstance(out, list):
            return None
        return _record(dict(zip(out[::2], out[1::2], strict=True)))

    async def give_back(self, task: Claimed) -> bool:
        """Put a claimed task back in its queue now (graceful shutdown), not counting the attempt."""
        keys = self._requeue_keys(task.model)
        return bool(await _guard(self._give_back(keys=keys, args=[self.p, task.id, task.token,
                                                                  repr(time.time()), self.ttl])))

    def _requeue_keys(self, model: str) -> list[str]:
        return [self.key("inflight", model), self.key("q", model), self.key("dl", model),
                self.key("pending", model)]

    async def reap(self, model: str) -> int:
        """Re-queue the tasks whose lease expired (their worker died); returns how many."""
        return int(await _guard(self._reap(keys=self._requeue_keys(model),
                                           args=[self.p, repr(time.time()), self.max_attempts, self.ttl])))

    async def expire(self, model: str) -> list[str]:
        """Mark queued tasks whose deadline passed as ``expired``; returns their ids."""
        keys = [self.key("dl", model), self.key("q", model), self.key("pending", model)]
        out = await _guard(self._expire(keys=keys, args=[self.p, repr(time.time()), self.ttl]))
        return [_s(v) for v in out]

    async def cancel(self, model: str, task_id: str) -> str:
        """Cancel a queued or running task; returns ``cancelled``, or raises TaskNotFound (no such
        task) or Conflict (it already has a final status, named in the message)."""
        keys = [self.key("q", model), self.key("inflight", model), self.key("dl", model),
                self.key("pending", model)]
        out = [_s(v) for v in await _guard(self._cancel(keys=keys, args=[self.p, task_id, repr(time.time()),
                                                                          self.ttl]))]
        if out[0] == "missing":
            raise TaskNotFound(f"no task {task_id!r} (unknown id, or its result expired)")
        if out[0] == "final":
            raise Conflict(f"task {task_id} already ended with status {out[1]}; nothing to cancel")
        return "cancelled"

    async def trim(self) -> int:
        """Delete the oldest finished tasks beyond ``max_finished``; returns how many went."""
        return int(await _guard(self._trim(keys=[f"{self.p}finished"],
                                           args=[self.p, repr(time.time()), self.ttl, self.max_finished])))

    async def get(self, task_id: str) -> dict[str, Any]:
        """The task hash without its input (bytes fields kept raw); TaskNotFound if absent or expired."""
        raw = await _guard(self.r.hgetall(self.key("task", task_id)))
        if not raw:
            raise TaskNotFound(f"no task {task_id!r} (unknown id, or its result expired)")
        return _record(raw)

    async def model_of(self, task_id: str) -> str | None:
        """The model of a task, or None when there is no such task."""
        value = await _guard(self.r.hget(self.key("task", task_id), "model"))
        return None if value is None else _s(value)

    async def status(self, task_id: str) -> str | None:
        value = await _guard(self.r.hget(self.key("task", task_id), "status"))
        return None if value is None else _s(value)

    async def queue_len(self, model: str) -> int:
        return int(await _guard(self.r.zcard(self.key("q", model))))

    async def pending(self, model: str) -> dict[int, int]:
        """Queued tasks by priority (maintained by the scripts on enqueue and dequeue)."""
        raw = await _guard(self.r.hgetall(self.key("pending", model)))
        return {int(_s(k)): int(_s(v)) for k, v in raw.items() if int(_s(v)) > 0}

    async def inflight(self, model: str) -> int:
        return int(await _guard(self.r.zcard(self.key("inflight", model))))

    async def get_plan(self, model: str) -> dict[str, Any] | None:
        """The plan published under ``plan:{model}`` (JSON with a ``version``), or None."""
        raw = await _guard(self.r.get(plan_key(self.p, model)))
        return None if raw is None else dict(json.loads(raw))

    async def put_plan(self, model: str, plan: Mapping[str, Any]) -> None:
        await _guard(self.r.set(plan_key(self.p, model), json.dumps(dict(plan))))

    async def purge(self) -> int:
        """Delete every key under the prefix (tests and ``edgesplit up --fresh``); returns how many."""
        n = 0
        async for key in self.r.scan_iter(match=f"{self.p}*", count=500):
            n += int(await _guard(self.r.delete(key)))
        return n


