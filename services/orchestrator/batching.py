"""Dynamic batching: up to ``max_batch`` tasks of one model claimed at once and run as one unit.

Not in the paper (Triton, Ray Serve and BentoML batch dynamically). At batch 1 the fully connected
layers are memory-bound (alexnet-paper's read about 170 MB of weights per task) and every stage pays
one request overhead per task; a batch of B pays them once for B images (``edgesplit.plan.latency``,
*Batches*).

Rules (``CLAIM_BATCH``, one atomic script):

* A batch is the head of the model's queue, in queue order (priority, then arrival; with aging the
  effective priority): it never holds a lower-priority task while a higher one waits.
* Its size is at most ``max_batch``, and at most the cap of its most urgent task's priority
  (``max_batch_by_priority``; 1 for priority 1 by default): an urgent task is not slowed down by the
  rows of less urgent tasks padding its batch (a batch of B computes B images in every stage). The
  batch ends before the first task that would not fit under the cap it brings.
* A partial batch may wait for more tasks, but only as long as ``max_queue_delay`` of its tasks'
  priorities allows, counted from each task's submit: the batch goes as soon as one of its tasks has
  waited its priority's delay. The default delay of priority 1 is 0, so an urgent task never waits to
  fill a batch. While it waits, nothing is claimed: the tasks stay queued (cancellable, visible to
  other replicas), and a more urgent arrival goes to the head.
* Batches are not preemptible: a task arriving waits for the batch in its stage. While urgent tasks
  come, the async pipeline runs a batch's first step ``batch_chunk`` tasks at a time and lets the
  priority-1 tasks queued meanwhile through between two chunks (``Runner.step``, ``claim(only=1)``).
  And while urgent tasks come a batch holds at most ``urgent_max_batch`` tasks (``Runner``): the
  express lane's urgent tasks compute beside the batches on the same cores, and a smaller batch is a
  shorter slice of the executors' and the cloud's memory bandwidth and event loops that an urgent
  slice shares (docs/BENCHMARKS.md, run 13: max_batch 4 against 8 at 16 customers).
* Each task of a batch keeps its own record, lease and fence token: results are split back per task,
  a task cancelled or expired on the way ends alone, and an input that cannot be decoded fails only
  its own task (``Runner``).

``max_batch = 1`` claims exactly as ``TaskQueue.claim``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from redis.exceptions import RedisError

from edgesplit.errors import Unavailable
from edgesplit.models.spec import ModelSpec
from services.orchestrator.engine import Job
from services.orchestrator.queue import Claimed, TaskQueue
from services.orchestrator.scripts import ALWAYS, QUEUED_ENDINGS

T = TypeVar("T")

# KEYS: q, inflight, dl, pending
# ARGV: prefix, now, lease_s, ttl, max_batch, n (priorities), delay of priority 1..n, cap of priority
# 1..n, token 1..max_batch, only (0, or the largest priority to take: the head must be that urgent)
# Returns {'ok', n, (id, priority, submitted, deadline, attempts, input) x n, n_expired, expired...,
# orphans...} when n tasks were claimed; {'wait', at, n_expired, ...}: a partial batch that may wait
# until Unix time ``at`` (nothing claimed); {'empty', '', n_expired, ...}. On the way, queued tasks
# whose deadline passed end ``expired`` and ids without a record are dropped (as in ``CLAIM``).
CLAIM_BATCH = ALWAYS + QUEUED_ENDINGS + """
local p = ARGV[1]
local now = tonumber(ARGV[2])
local maxb = tonumber(ARGV[5])
local nd = tonumber(ARGV[6])
local cand = {}
local function level(prio)
  return math.min(math.max(math.floor(prio), 1), nd)
end
local function delay(prio) return tonumber(ARGV[6 + level(prio)]) end
local function cap(prio) return math.min(maxb, tonumber(ARGV[6 + nd + level(prio)])) end
local limit, full = maxb, false
local only = tonumber(ARGV[#ARGV])
for _ = 1, 100 do
  local ids = redis.call('ZRANGE', KEYS[1], #cand, #cand + 63)
  for _, id in ipairs(ids) do
    if #cand >= limit then full = true break end
    local key = p .. 'task:' .. id
    local f = redis.call('HMGET', key, 'priority', 'submitted', 'deadline', 'attempts', 'input')
    if not f[1] then
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', KEYS[3], id)
      orphans[#orphans + 1] = id
    elseif tonumber(f[3]) <= now then
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZREM', KEYS[3], id)
      redis.call('HINCRBY', KEYS[4], f[1], -1)
      expire_queued(p, key, id, ARGV[2], tonumber(ARGV[4]))
    elseif only > 0 and tonumber(f[1]) > only then
      full = true
      break
    else
      local c = math.min(limit, cap(tonumber(f[1])))
      if #cand + 1 > c then full = true break end
      limit = c
      cand[#cand + 1] = {id, f}
    end
  end
  if full or #cand >= limit or #ids < 64 then break end
end
if #cand == 0 then return report({'empty', ''}) end
if only > 0 then full = true end  -- an urgent claim never waits for company
local go = math.huge
for _, c in ipairs(cand) do
  go = math.min(go, tonumber(c[2][2]) + delay(tonumber(c[2][1])))
end
if not full and #cand < limit and go > now then return report({'wait', string.format('%.17g', go)}) end
local out = {'ok', tostring(#cand)}
for i, c in ipairs(cand) do
  local id, f = c[1], c[2]
  local key = p .. 'task:' .. id
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HINCRBY', KEYS[4], f[1], -1)
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'status', 'running', 'lease', ARGV[6 + 2 * nd + i], 'claimed', ARGV[2])
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
  for _, v in ipairs({id, f[1], f[2], f[3], tostring(attempts), f[5]}) do out[#out + 1] = v end
end
return report(out)
"""


class BatchClaim(NamedTuple):
    """What one batch claim found: the tasks taken (head first; empty when none), the Unix time until
    which a partial batch may still wait (None when there is nothing to wait for), ids that expired
    while queued and queued ids without a record."""

    tasks: list[Claimed]
    wait_until: float | None
    expired: list[str]
    orphans: list[str]


def rows_within(spec: ModelSpec, body_bytes: int) -> int:
    """The most tasks of ``spec`` that one batch may hold so that every map it sends in one request
    (its largest edge map, float32, for all its rows) fits in ``body_bytes``: a larger batch would be
    refused by the executors (413) and run one task at a time from there (``Runner``). At least 1.
    In 64 MiB: alexnet-paper 199 rows; vgg16-paper (maps of 64 x 224 x 224) 5."""
    largest = 4 * max(math.prod(shape) for shape in spec.shapes())
    return max(1, body_bytes // (largest + 4096))  # room for the NPY header and a slice's halo rows


def delay_of(delays: Mapping[int, float], priority: int) -> float:
    """The entry of ``priority`` in a per-priority setting (``max_queue_delay_s`` in seconds,
    ``max_batch_by_priority``): that of the largest listed priority <= it (of the smallest listed one
    when it is below them all)."""
    at_or_above = [p for p in delays if p <= priority]
    return float(delays[max(at_or_above)] if at_or_above else delays[min(delays)])


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except (RedisError, OSError) as e:
        raise Unavailable(f"Redis does not answer: {e}") from e


class BatchQueue:
    """Batch claims on a ``TaskQueue``'s keys (same prefix, TTL and Redis client)."""

    def __init__(self, queue: TaskQueue, max_batch: int, delays: Mapping[int, float],
                 max_priority: int, caps: Mapping[int, int] | None = None) -> None:
        self.queue = queue
        self.max_batch = max_batch
        self.delays = [delay_of(delays, p) for p in range(1, max_priority + 1)]
        caps = caps or {1: max_batch}
        self.caps = [int(delay_of(caps, p)) for p in range(1, max_priority + 1)]
        self._script = queue.r.register_script(CLAIM_BATCH)

    async def claim(self, model: str, lease_s: float, only: int = 0, limit: int = 0) -> BatchClaim:
        """Claim up to ``max_batch`` tasks of ``model`` from the head of its queue (module docstring),
        each under a fresh attempt token with a lease of ``lease_s`` seconds. ``only`` > 0: only tasks
        of priority ``only`` or more urgent, at once (nothing when the head is less urgent).
        ``limit`` > 0: at most that many tasks (and ``max_batch``)."""
        q = self.queue
        keys = [q.key("q", model), q.key("inflight", model), q.key("dl", model), q.key("pending", model)]
        tokens = [uuid.uuid4().hex for _ in range(self.max_batch)]
        size = min(self.max_batch, limit) if limit > 0 else self.max_batch
        args: list[str | int] = [q.p, repr(time.time()), repr(lease_s), q.ttl, size,
                                 len(self.delays), *(repr(d) for d in self.delays), *self.caps, *tokens, only]
        out = await _guard(self._script(keys=keys, args=args))
        kind = _s(out[0])
        n = int(_s(out[1])) if kind == "ok" else 0
        tasks = []
        for i in range(n):
            tid, prio, sub, dl, att = (_s(v) for v in out[2 + 6 * i : 7 + 6 * i])
            data = bytes(out[7 + 6 * i])
            tasks.append(Claimed(tid, model, int(prio), float(sub), float(dl), int(att), data, tokens[i]))
        rest = out[2 + 6 * n :]
        n_expired = int(_s(rest[0]))
        return BatchClaim(tasks, float(_s(out[1])) if kind == "wait" else None,
                          [_s(v) for v in rest[1 : 1 + n_expired]], [_s(v) for v in rest[1 + n_expired :]])


@dataclass
class BatchJob(Job):
    """A batch in the pipeline: ``members[i]`` is the task of row i of ``x``; ``task`` is the head
    (the most urgent: it orders the cloud gate and names the traces). A member that ends on the way
    (cancelled, lease lost, expired, its input refused) leaves ``live``; its row keeps being computed
    (rows are independent) but its result is not written."""

    members: list[Claimed] = field(default_factory=list)
    live: dict[str, Claimed] = field(default_factory=dict)  # by attempt token

    def member_rows(self) -> list[tuple[int, Claimed]]:
        """(row, task) of the members still live, in row order."""
        return [(i, t) for i, t in enumerate(self.members) if t.token in self.live]

    def drop(self, token: str) -> None:
        """Member ``token`` ended on the way; the batch is abandoned once no member is live."""
        self.live.pop(token, None)
        if not self.live:
            self.abandon()
