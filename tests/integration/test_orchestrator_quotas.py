"""The orchestrator's quota pushes keep the quotas it does not own (the allocator service's).

``push_quotas`` replaces only the orchestrator's namespace of an executor's quotas
(``PUT /v1/quotas/orchestrator``); here the other quotas are set with the plain ``PUT /v1/quotas``, as
an operator would (``tests/integration/test_quota_owners.py`` covers the allocator's namespace).
``merge_quotas`` is no longer used by the orchestrator; its test stays while the function does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.executor.client import ExecutorClient
from services.orchestrator.routes import merge_quotas
from services.orchestrator.service import push_quotas
from tooling.proc import ServiceProcess

pytestmark = [pytest.mark.services, pytest.mark.anyio]
OURS, THEIRS = "digits-cnn", "alexnet-paper"


@pytest.fixture
async def ex(executors: list[ServiceProcess], token: str) -> AsyncIterator[ExecutorClient]:
    client = ExecutorClient(executors[1].url, token=token)
    await client.put_quotas({})
    yield client
    await client.put_quotas({})  # leave the shared executor as found
    await client.aclose()


def test_merge_replaces_only_the_owned_models() -> None:
    current = {THEIRS: {0: 2, 1: 1}, OURS: {0: 1, 1: 1, 2: 1}}
    assert merge_quotas(current, {OURS: {0: 1}}, {OURS}) == {THEIRS: {0: 2, 1: 1}, OURS: {0: 1}}
    assert merge_quotas(current, {}, {OURS}) == {THEIRS: {0: 2, 1: 1}}  # no longer on this executor
    assert merge_quotas(current, {THEIRS: {0: 4}, OURS: {0: 1, 1: 1, 2: 1}}, {OURS}) == current  # not ours


async def test_a_push_keeps_the_allocators_quotas(ex: ExecutorClient) -> None:
    await ex.put_quotas({THEIRS: {0: 2, 1: 1}})  # what the allocator service set
    held = await push_quotas(ex, {OURS: {0: 1}}, {OURS})
    assert held == await ex.get_quotas() == {THEIRS: {0: 2, 1: 1}, OURS: {0: 1}}
    # the executor left the model's plan (e.g. it went down and the plan was remade without it)
    assert await push_quotas(ex, {}, {OURS}) == {THEIRS: {0: 2, 1: 1}}
    assert await ex.get_quotas() == {THEIRS: {0: 2, 1: 1}}


async def test_a_push_over_capacity_leaves_the_table_as_it_was(ex: ExecutorClient) -> None:
    await ex.put_quotas({THEIRS: {0: 3}})  # capacity 4
    assert await push_quotas(ex, {OURS: {0: 1, 1: 1}}, {OURS}) is None
    assert await ex.get_quotas() == {THEIRS: {0: 3}}
