"""Slices computed by two real executor processes, merged here, equal the unsplit torch layers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgesplit.errors import InvalidPlan
from edgesplit.models import ModelSpec, get_spec
from edgesplit.models.build import build_module
from edgesplit.split import (
    STRATEGIES,
    Strategy,
    check_group,
    conv_groups,
    crop_input,
    make_slices,
    merge,
    part_total,
)
from services.common.http import new_http_client
from services.executor.client import ExecutorClient
from tooling.proc import ServiceProcess

pytestmark = pytest.mark.services

_MODULES: dict[str, nn.Sequential] = {}


def module_of(name: str) -> nn.Sequential:
    """The whole model with the services' seeded weights (seed 0), built once per test session."""
    if name not in _MODULES:
        _MODULES[name] = build_module(get_spec(name), seed=0).requires_grad_(False)
    return _MODULES[name]


@pytest.fixture
async def clients(executors: list[ServiceProcess], token: str) -> AsyncIterator[list[ExecutorClient]]:
    http = new_http_client()
    yield [ExecutorClient(e.url, token=token, http=http) for e in executors]
    await http.aclose()


async def remote_group(clients: Sequence[ExecutorClient], spec: ModelSpec, start: int, stop: int,
                       strategy: Strategy, parts: Sequence[int], x: torch.Tensor,
                       subzone: int = 0) -> torch.Tensor:
    """Split a group across the executors (part m on executor m), compute remotely, merge here."""
    slices = make_slices(spec, start, stop, strategy, parts)
    outs = await asyncio.gather(*(
        clients[m].run_slice(spec.name, sl, crop_input(x, sl).contiguous().numpy(), subzone, f"t{m}")
        for m, sl in enumerate(slices)))
    return merge(module_of(spec.name), spec, slices, [torch.from_numpy(o) for o in outs])


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", ["digits-cnn", "alexnet-paper"])
async def test_every_conv_group_split_over_two_executors_is_exact(
        clients: list[ExecutorClient], name: str, strategy: Strategy) -> None:
    spec, module = get_spec(name), module_of(name)
    rng = np.random.default_rng(7)
    x = torch.randn(2, *spec.input, generator=torch.Generator().manual_seed(3))
    for stage, (start, stop) in enumerate(conv_groups(spec)):
        x_in = module[:start](x)
        total = part_total(spec, start, stop, strategy)
        cut = int(rng.integers(1, total)) if total > 1 else 1
        for parts in ([cut, total - cut], [total, 0]):  # an uneven split, and one server with nothing
            got = await remote_group(clients, spec, start, stop, strategy, parts, x_in, stage)
            torch.testing.assert_close(got, module[start:stop](x_in), rtol=1e-4, atol=1e-4)


@pytest.mark.anyio
async def test_the_whole_edge_part_stage_by_stage_equals_the_unsplit_model(
        clients: list[ExecutorClient]) -> None:
    spec, module = get_spec("alexnet-paper"), module_of("alexnet-paper")
    x = torch.randn(1, *spec.input, generator=torch.Generator().manual_seed(11))
    y = x
    for stage, (start, stop) in enumerate(conv_groups(spec)):
        strategy = STRATEGIES[stage % 3]
        total = part_total(spec, start, stop, strategy)
        parts = [total // 2, total - total // 2]
        y = await remote_group(clients, spec, start, stop, strategy, parts, y, stage)
    torch.testing.assert_close(y, module[: spec.n_edge](x), rtol=1e-4, atol=1e-4)


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_random_fused_groups_and_splits_are_exact(executors: list[ServiceProcess], token: str,
                                                  data: st.DataObject) -> None:
    spec = get_spec("digits-cnn")
    start = data.draw(st.integers(0, spec.n_edge - 1), label="start")
    stop = data.draw(st.integers(start + 1, spec.n_edge), label="stop")
    strategy = data.draw(st.sampled_from(STRATEGIES), label="strategy")
    try:
        check_group(spec, start, stop, strategy)
    except InvalidPlan:
        return  # this strategy cannot split that group; the planner never asks for it
    total = part_total(spec, start, stop, strategy)
    cut = data.draw(st.integers(0, total), label="cut")
    batch = data.draw(st.integers(1, 3), label="batch")
    module = module_of(spec.name)
    x_in = module[:start](torch.randn(batch, *spec.input, generator=torch.Generator().manual_seed(cut)))

    async def run() -> torch.Tensor:
        http = new_http_client()
        try:
            clients = [ExecutorClient(e.url, token=token, http=http) for e in executors]
            return await remote_group(clients, spec, start, stop, strategy, [cut, total - cut], x_in, start)
        finally:
            await http.aclose()

    torch.testing.assert_close(asyncio.run(run()), module[start:stop](x_in), rtol=1e-4, atol=1e-4)
