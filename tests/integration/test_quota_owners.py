"""One owner per quota namespace (issue 16): the allocator service and an orchestrator each replace only
their own namespace of an executor's quotas, so a write of one can no longer undo a write of the other.

Before, both read the executor's whole table, changed their models and put the whole table back (no
version): a write landing between another writer's read and its put was lost.
``test_a_write_between_read_and_put_is_not_lost`` replays that interleaving on a real executor; with
the old ``push_quotas`` (GET, merge, PUT /v1/quotas) the allocator's quotas were gone afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from edgesplit.errors import CapacityExceeded, InvalidInput
from edgesplit.plan.cluster import Server
from services.allocator.executors import ExecutorRef
from services.allocator.measure import parse_executor_metrics
from services.allocator.metrics import AllocatorMetrics
from services.allocator.push import Pusher
from services.common.channels import QUOTA_ALLOCATOR, QUOTA_OPERATOR, QUOTA_ORCHESTRATOR
from services.common.http import HttpPool
from services.executor.client import ExecutorClient
from services.orchestrator.service import push_quotas

pytestmark = [pytest.mark.services, pytest.mark.anyio]
OURS, THEIRS = "digits-cnn", "alexnet-paper"  # planned by the orchestrator / by the allocator service


class Interleaved(ExecutorClient):
    """A real client that runs ``before_put`` (once) just before its first PUT reaches the executor."""

    before_put: Callable[[], Awaitable[object]] | None = None

    async def json(self, method: str, path: str, json_body: Any = None) -> Any:
        if method == "PUT" and self.before_put is not None:
            hook, self.before_put = self.before_put, None
            await hook()
        return await super().json(method, path, json_body)


@pytest.fixture
async def ex(executors: list[Any], token: str) -> AsyncIterator[Interleaved]:
    client = Interleaved(executors[1].url, token=token)
    await client.put_quotas({})
    yield client
    await client.put_quotas({})  # leave the shared executor as found (every namespace emptied)
    await client.aclose()


@pytest.fixture
async def allocator(executors: list[Any], token: str) -> AsyncIterator[tuple[Pusher, ExecutorRef]]:
    http = HttpPool()
    pusher = Pusher(http, token, 10.0, AllocatorMetrics())
    yield pusher, ExecutorRef(Server("executor-1", 4, 1e9, 1e9, url=executors[1].url))
    await pusher.aclose()
    await http.aclose()


async def test_a_write_between_read_and_put_is_not_lost(ex: Interleaved,
                                                        allocator: tuple[Pusher, ExecutorRef]) -> None:
    pusher, ref = allocator
    ex.before_put = lambda: pusher.put(ref, {THEIRS: {0: 2}})  # the allocator's push lands in between
    held = await push_quotas(ex, {OURS: {0: 1, 1: 1}}, {OURS})
    assert held == await ex.get_quotas() == {THEIRS: {0: 2}, OURS: {0: 1, 1: 1}}
    # and the other way round: the orchestrator's push lands inside the allocator's
    ex.before_put = None
    assert await pusher.put(ref, {THEIRS: {0: 1}})
    assert await ex.get_quotas() == {THEIRS: {0: 1}, OURS: {0: 1, 1: 1}}
    assert await ex.get_quotas(QUOTA_ALLOCATOR) == {THEIRS: {0: 1}}
    assert await ex.get_quotas(QUOTA_ORCHESTRATOR) == {OURS: {0: 1, 1: 1}}


async def test_the_allocator_measures_its_own_namespace(ex: Interleaved,
                                                        allocator: tuple[Pusher, ExecutorRef]) -> None:
    pusher, ref = allocator
    assert await pusher.put(ref, {THEIRS: {0: 2}})
    await push_quotas(ex, {OURS: {0: 1}}, {OURS})
    m = parse_executor_metrics(await ex.metrics_text())
    assert m["quotas"] == {THEIRS: {0: 2}, OURS: {0: 1}}  # in force
    assert m["owned"] == {QUOTA_ALLOCATOR: {THEIRS: {0: 2}}, QUOTA_ORCHESTRATOR: {OURS: {0: 1}}}
    assert (await ex.info())["quota_owners"] == {QUOTA_ALLOCATOR: {THEIRS: {"0": 2}},
                                                 QUOTA_ORCHESTRATOR: {OURS: {"0": 1}}}


async def test_precedence_capacity_and_the_plain_put(ex: Interleaved) -> None:
    # the same model in two namespaces (the allocator took over a model the orchestrator planned):
    # the allocator's entry is in force, and only the entries in force count against the capacity
    await ex.put_quotas({OURS: {0: 3}}, QUOTA_ORCHESTRATOR)
    in_force = {OURS: {0: 2}, THEIRS: {0: 2}}  # 4 threads: the orchestrator's 3 are not in force
    assert await ex.put_quotas(in_force, QUOTA_ALLOCATOR) == in_force
    with pytest.raises(CapacityExceeded, match="quotas total 5 threads"):  # refused whole
        await ex.put_quotas({OURS: {0: 2}, THEIRS: {0: 3}}, QUOTA_ALLOCATOR)
    assert await ex.get_quotas() == in_force and await ex.get_quotas(QUOTA_ORCHESTRATOR) == {OURS: {0: 3}}
    with pytest.raises(InvalidInput, match="unknown quota owner 'someone'"):
        await ex.put_quotas({OURS: {0: 1}}, "someone")
    # the plain PUT replaces every namespace (the operator's then holds the table)
    assert await ex.put_quotas({THEIRS: {1: 1}}) == {THEIRS: {1: 1}}
    assert await ex.get_quotas(QUOTA_ORCHESTRATOR) == {} and await ex.get_quotas(QUOTA_ALLOCATOR) == {}
    assert await ex.get_quotas(QUOTA_OPERATOR) == {THEIRS: {1: 1}}
