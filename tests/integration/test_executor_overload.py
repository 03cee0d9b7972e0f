"""A real executor under overload: a full sub-zone queue answers 503 with Retry-After, and a slice
whose caller went away while it waited is not computed."""

from __future__ import annotations

import asyncio
import re

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
