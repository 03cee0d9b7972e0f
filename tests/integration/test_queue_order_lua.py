"""``QueueOrder`` against the Lua that the Redis queue runs: a real redis-server, the real SUBMIT and
CLAIM scripts, and arrival times chosen by the test (passed as the script's ``now``), so the order is
decided by the rule and not by how fast the machine submits."""

from __future__ import annotations

import random
import time

import pytest

from edgesplit.queueing import QueueOrder
from services.orchestrator import scripts
from services.orchestrator.queue import TaskQueue, new_task_id

pytestmark = [pytest.mark.redis, pytest.mark.anyio]
MODEL = "digits-cnn"


async def _submit_at(q: TaskQueue, order: QueueOrder, priority: int, arrival: float) -> str:
    """The real SUBMIT script with ``now`` = ``arrival`` (Unix seconds); the task's deadline is a
    minute from the real now, so it is claimable."""
    tid = new_task_id()
    keys = [q.key("q", MODEL), q.key("dl", MODEL), q.key("pending", MODEL), f"{q.p}seq", f"{q.p}epoch", "",
            q.key("inflight", MODEL)]
    args = [q.p, tid, MODEL, priority, repr(arrival), repr(time.time() + 60), 10_000, b"x", 60, "", "60",
            *order.lua_args(), "", "0"]
    out = await q.r.register_script(scripts.SUBMIT)(keys=keys, args=args)
    assert out[0] == b"ok"
    return tid


async def _drain(q: TaskQueue) -> list[str]:
    ids = []
    while (task := (await q.claim(MODEL, lease_s=30)).task) is not None:
        ids.append(task.id)
    return ids


@pytest.mark.parametrize("aging_s", [0.0, 0.05, 0.3, 2.0])
async def test_the_lua_serves_in_queue_order(queue: TaskQueue, aging_s: float) -> None:
    order, rng = QueueOrder(aging_s), random.Random(int(aging_s * 100))
    base = time.time() - 100
    arrivals = sorted(base + rng.uniform(0, 3) for _ in range(40))
    tasks = [(await _submit_at(queue, order, p, t), p, t)
             for p, t in zip((rng.randint(1, 5) for _ in arrivals), arrivals, strict=True)]
    epoch = float(await queue.r.get(f"{queue.p}epoch") or 0.0)  # aged scores count from the epoch
    arrived = [(tid, p, t - epoch, seq) for seq, (tid, p, t) in enumerate(tasks, 1)]
    for tid, p, t, seq in arrived:  # the score Redis stores is QueueOrder.score
        assert float((await queue.get(tid))["score"]) == order.score(p, t, seq)
    want = [tid for tid, p, t, seq in sorted(arrived, key=lambda a: order.key(a[1], a[2], a[3]))]
    assert await _drain(queue) == want


async def test_the_lua_ages_continuously_like_the_simulator_now(queue: TaskQueue) -> None:
    # the case where the simulator's old whole-level rule disagreed (tests/unit/test_sim_engine.py):
    # priority 3 at t=0 against priority 1 at t=0.5, aging 0.4: 3 - w/0.4 vs 1 - (w-0.5)/0.4 at any
    # common time: the priority-1 task stays ahead (by 1.25 levels); floor and clamp at 1 tied them
    order = QueueOrder(0.4)
    base = time.time() - 100
    three = await _submit_at(queue, order, 3, base)
    one = await _submit_at(queue, order, 1, base + 0.5)
    assert await _drain(queue) == [one, three]
