"""A real executor under overload: a full sub-zone queue answers 503 with Retry-After, and a slice
whose caller went away while it waited is not computed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.split import make_slices
from tooling.proc import Spawner

pytestmark = [pytest.mark.services, pytest.mark.anyio]
SPEC = get_spec("digits-cnn")
SLICE = make_slices(SPEC, 0, 2, "rows", [3, 5])[1]
BODY = wire.encode(np.ones(SLICE.in_shape(SPEC, 1), np.float32))
PARAMS = {**wire.slice_to_params(SLICE), "subzone": "0"}
URL = "/v1/slices/digits-cnn"
TOKEN = "overload-test-token-0123456789"


def _counter(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))


async def test_a_full_subzone_queue_answers_503_with_retry_after(spawn: Spawner) -> None:
    ex = spawn.executor("overload", token=TOKEN, models="digits-cnn", threads=1, slice_delay_s=1.0,
                        queue_max=1)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=ex.url, headers=auth, timeout=30) as c:
        first = asyncio.create_task(c.post(URL, params=PARAMS, content=BODY))  # computing
        await asyncio.sleep(0.3)
        second = asyncio.create_task(c.post(URL, params=PARAMS, content=BODY))  # waiting: the queue is full
        await asyncio.sleep(0.3)
        third = await c.post(URL, params=PARAMS, content=BODY)
        assert third.status_code == 503, third.text
        assert int(third.headers["Retry-After"]) >= 1 and third.json()["type"] == "Overloaded"
        assert [(await t).status_code for t in (first, second)] == [200, 200]
        metrics = (await c.get("/metrics")).text
    assert _counter(metrics, "edgesplit_executor_slices_refused_total") == 1


async def test_a_slice_whose_caller_went_away_is_not_computed(spawn: Spawner) -> None:
    ex = spawn.executor("gone", token=TOKEN, models="digits-cnn", threads=1, slice_delay_s=1.0)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=ex.url, headers=auth, timeout=30) as c:
        busy = asyncio.create_task(c.post(URL, params=PARAMS, content=BODY))
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=ex.url, headers=auth, timeout=0.3) as impatient:
            with pytest.raises(httpx.TimeoutException):  # waits behind `busy`, then its caller leaves
                await impatient.post(URL, params=PARAMS, content=BODY)
        assert (await busy).status_code == 200
        await asyncio.sleep(0.5)
        metrics = (await c.get("/metrics")).text
    assert _counter(metrics, "edgesplit_executor_slices_cancelled_total") == 1
    computed = re.search(r'^edgesplit_executor_slice_seconds_count\{model="digits-cnn",stage="0"\} (\S+)$',
                         metrics, re.M)
    assert computed is not None and float(computed.group(1)) == 1.0, "only the slice still wanted ran"


async def test_an_urgent_slice_runs_beside_the_queued_bulk_slices(spawn: Spawner) -> None:
    """``?priority=1`` (at most ``urgent_priority``) runs on the sub-zone's urgent lane: sent after three
    bulk slices (1 s each, one at a time), it is answered before the second bulk slice served ends, with
    the same result; the bulk worker's thread runs at ``bulk_nice`` (10) under SCHED_IDLE
    (``bulk_idle``), the urgent lane's at ``urgent_nice`` (-10, as root), the others at the default."""
    ex = spawn.executor("lanes", token=TOKEN, models="digits-cnn", threads=1, slice_delay_s=1.0)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    done: list[str] = []

    async def send(name: str, priority: int) -> httpx.Response:
        r = await c.post(URL, params={**PARAMS, "priority": str(priority)}, content=BODY)
        done.append(name)
        return r

    async with httpx.AsyncClient(base_url=ex.url, headers=auth, timeout=30) as c:
        bulk = [asyncio.create_task(send(f"bulk{i}", 5)) for i in range(3)]
        await asyncio.sleep(0.3)
        urgent = await send("urgent", 1)
        answers = [await t for t in bulk]
    assert urgent.status_code == 200 and all(a.status_code == 200 for a in answers)
    # the bulk requests reach the executor in any order (three connections at once): the urgent one is
    # answered before the last two bulk slices served, and waited less than the last one served did
    assert done.index("urgent") <= 1, done
    assert float(urgent.headers["X-Wait-Seconds"]) < max(float(a.headers["X-Wait-Seconds"]) for a in answers)
    assert wire.decode(urgent.content).tolist() == wire.decode(answers[0].content).tolist()
    nices = [int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])  # field 19 of stat
             for task in Path(f"/proc/{ex.proc.pid}/task").iterdir()]
    assert 10 in nices and 0 in nices, nices  # the bulk worker; the event loop
    assert (-10 if os.geteuid() == 0 else 0) in nices, nices  # the urgent lane (urgent_nice, as root)
    policies = set()
    for task in Path(f"/proc/{ex.proc.pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            policies.add(os.sched_getscheduler(int(task.name)))
    assert {os.SCHED_IDLE, os.SCHED_OTHER} <= policies, policies  # the bulk worker; the others
