"""Quotas of a real executor change at run time; the sub-zone then runs that many workers, exactly."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from edgesplit.errors import CapacityExceeded, InvalidInput, ModelNotFound
from edgesplit.models import get_spec
from edgesplit.models.build import build_module
from edgesplit.split import STRATEGIES, crop_input, make_slices, merge, part_total
from services.executor.client import ExecutorClient
from tooling.proc import ServiceProcess

pytestmark = [pytest.mark.services, pytest.mark.anyio]
MODEL = "alexnet-paper"
STAGE = 1  # the second conv group, layers [2, 4)


@pytest.fixture
async def ex(executors: list[ServiceProcess], token: str) -> AsyncIterator[ExecutorClient]:
    client = ExecutorClient(executors[0].url, token=token)
    yield client
    await client.put_quotas({})  # leave the shared executor as found
    await client.aclose()


def samples(text: str, name: str) -> dict[tuple[str, str], float]:
    """Values of metric ``name`` by (model, stage) label."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[(s.labels.get("model", ""), s.labels.get("stage", ""))] = s.value
    return out


async def test_quota_changes_take_effect_and_results_stay_exact(ex: ExecutorClient) -> None:
    spec = get_spec(MODEL)
    module = build_module(spec, seed=0).requires_grad_(False)
    x_in = module[:2](torch.randn(1, *spec.input, generator=torch.Generator().manual_seed(5)))
    want = module[2:4](x_in)
    for k in (2, 3, 1):
        assert await ex.put_quotas({MODEL: {STAGE: k}, "digits-cnn": {0: 1}}) == \
            {MODEL: {STAGE: k}, "digits-cnn": {0: 1}}
        assert (await ex.get_quotas())[MODEL] == {STAGE: k}
        for strategy in STRATEGIES:
            # the whole group on this executor, cut by the sub-zone across its k workers
            sl = make_slices(spec, 2, 4, strategy, [part_total(spec, 2, 4, strategy)])[0]
            run = await ex.run_slice_timed(MODEL, sl, crop_input(x_in, sl).numpy(), STAGE)
            assert run.workers == k
            got = merge(module, spec, [sl], [torch.from_numpy(run.output)])
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        text = await ex.metrics_text()
        key = (MODEL, str(STAGE))
        assert samples(text, "edgesplit_executor_subzone_workers")[key] == k
        assert samples(text, "edgesplit_executor_last_slice_workers")[key] == k
        assert samples(text, "edgesplit_executor_quota_threads")[key] == k
    info = await ex.info()
    assert info["capacity"] == 4 and info["zones"] == {MODEL: 1, "digits-cnn": 1}
    assert info["flops_per_thread"] > 0


async def test_quotas_above_capacity_or_invalid_are_refused(ex: ExecutorClient, token: str) -> None:
    await ex.put_quotas({MODEL: {0: 2, 2: 1}})
    with pytest.raises(CapacityExceeded, match=r"HTTP 409: quotas total 5 threads.*capacity of 4"):
        await ex.put_quotas({MODEL: {0: 2, 2: 2}, "digits-cnn": {0: 1}})
    with pytest.raises(ModelNotFound, match="HTTP 404"):
        await ex.put_quotas({"vgg16": {0: 1}})
    with pytest.raises(InvalidInput, match=r"HTTP 422: sub-zone 10 out of range"):
        await ex.put_quotas({MODEL: {10: 1}})
    with pytest.raises(InvalidInput, match=r"HTTP 422: quota .* is 0; expected >= 1"):
        await ex.put_quotas({MODEL: {0: 0}})
    async with httpx.AsyncClient(base_url=ex.base_url, headers={"Authorization": f"Bearer {token}"}) as c:
        r = await c.put("/v1/quotas", json={MODEL: {"first": 1}})
        assert r.status_code == 422 and "error" in r.json()
        r = await c.put("/v1/quotas", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["error"]
    assert await ex.get_quotas() == {MODEL: {0: 2, 2: 1}}  # refused changes change nothing


async def test_metrics_report_latency_by_model_and_stage(ex: ExecutorClient) -> None:
    spec = get_spec("digits-cnn")
    sl = make_slices(spec, 0, 2, "rows", [3, 5])[1]
    await ex.run_slice("digits-cnn", sl, torch.zeros(sl.in_shape(spec)).numpy(), 0)
    text = await ex.metrics_text()
    assert samples(text, "edgesplit_executor_slice_seconds_count")[("digits-cnn", "0")] >= 1
    assert samples(text, "edgesplit_executor_slice_compute_seconds_count")[("digits-cnn", "0")] >= 1
    assert samples(text, "edgesplit_executor_busy_workers")[("digits-cnn", "0")] == 0
    assert samples(text, "edgesplit_executor_queued_slices")[("digits-cnn", "0")] == 0
    assert samples(text, "edgesplit_executor_flops_per_thread")[("", "")] > 0
    assert samples(text, "edgesplit_executor_capacity_threads")[("", "")] == 4
