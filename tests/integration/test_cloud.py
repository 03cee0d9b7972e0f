"""The real cloud service: logits equal the unsplit classifier; the whole model split end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
import torch

from edgesplit import wire
from edgesplit.errors import InvalidInput, ModelNotFound
from edgesplit.models import get_spec
from edgesplit.models.build import build_module
from edgesplit.split import STRATEGIES, conv_groups, crop_input, make_slices, merge, part_total
from services.cloud.client import CloudClient
from services.common.errors import Unauthorized
from services.common.http import new_http_client
from services.executor.client import ExecutorClient
from tooling.proc import ServiceProcess

pytestmark = [pytest.mark.services, pytest.mark.anyio]


@pytest.fixture
async def cloud_client(cloud: ServiceProcess, token: str) -> AsyncIterator[CloudClient]:
    client = CloudClient(cloud.url, token=token)
    yield client
    await client.aclose()


@pytest.mark.parametrize("name", ["digits-cnn", "alexnet-paper"])
async def test_logits_equal_the_unsplit_classifier(cloud_client: CloudClient, name: str) -> None:
    spec = get_spec(name)
    module = build_module(spec, seed=0).requires_grad_(False)
    feats = torch.randn(3, *spec.feature_shape, generator=torch.Generator().manual_seed(1))
    want = module[spec.n_edge :](feats)
    got = await cloud_client.infer(name, feats.numpy())
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4)
    flat = await cloud_client.infer(name, feats.flatten(1).numpy())  # (N, F) is accepted too
    torch.testing.assert_close(torch.from_numpy(flat), want, rtol=1e-4, atol=1e-4)
    urgent = await cloud_client.infer(name, feats.numpy(), priority=1)  # orders the waiting requests only
    torch.testing.assert_close(torch.from_numpy(urgent), want, rtol=1e-4, atol=1e-4)


async def test_urgent_requests_beside_bulk_work_each_get_their_own_logits(cloud_client: CloudClient) -> None:
    """Urgent requests sent at once while a bulk batch computes go to the urgent lane, where those
    waiting together are computed as one batch (``UrgentBatches``): each still gets the logits of
    its own feature maps (rows of 1, 2 and 3 images, flat and not), equal to the unsplit classifier."""
    spec = get_spec("alexnet-paper")
    module = build_module(spec, seed=0).requires_grad_(False)
    gen = torch.Generator().manual_seed(2)
    bulk = torch.randn(64, *spec.feature_shape, generator=gen)
    feats = [torch.randn(n, *spec.feature_shape, generator=gen) for n in (1, 2, 3, 1, 2, 1)]
    sent = [f.flatten(1) if i % 2 else f for i, f in enumerate(feats)]
    busy = asyncio.create_task(cloud_client.infer(spec.name, bulk.numpy(), priority=5))
    await asyncio.sleep(0.05)
    got = await asyncio.gather(*(cloud_client.infer(spec.name, f.numpy(), priority=1) for f in sent))
    torch.testing.assert_close(torch.from_numpy(await busy), module[spec.n_edge:](bulk), rtol=1e-4, atol=1e-4)
    for f, logits in zip(feats, got, strict=True):
        torch.testing.assert_close(torch.from_numpy(logits), module[spec.n_edge:](f), rtol=1e-4, atol=1e-4)


async def test_a_whole_model_split_over_executors_then_cloud_equals_the_model(
        executors: list[ServiceProcess], cloud: ServiceProcess, token: str) -> None:
    spec = get_spec("alexnet-paper")
    module = build_module(spec, seed=0).requires_grad_(False)
    x = torch.randn(2, *spec.input, generator=torch.Generator().manual_seed(2))
    http = new_http_client()  # one pooled client for every service, as the orchestrator does
    edge = [ExecutorClient(e.url, token=token, http=http) for e in executors]
    y = x
    for stage, (start, stop) in enumerate(conv_groups(spec)):
        strategy = STRATEGIES[(stage + 1) % 3]
        total = part_total(spec, start, stop, strategy)
        slices = make_slices(spec, start, stop, strategy, [total - total // 3, total // 3])
        outs = await asyncio.gather(*(c.run_slice(spec.name, s, crop_input(y, s).contiguous().numpy(), stage)
                                      for c, s in zip(edge, slices, strict=True)))
        y = merge(module, spec, slices, [torch.from_numpy(o) for o in outs])
    logits = await CloudClient(cloud.url, token=token, http=http).infer(spec.name, y.numpy())
    await http.aclose()
    torch.testing.assert_close(torch.from_numpy(logits), module(x), rtol=1e-4, atol=1e-4)


async def test_bad_requests_get_4xx_and_the_cloud_keeps_serving(cloud_client: CloudClient,
                                                                 cloud: ServiceProcess, token: str) -> None:
    good = np.zeros((1, *get_spec("digits-cnn").feature_shape), np.float32)
    with pytest.raises(InvalidInput, match=r"HTTP 422: features have shape \[1, 32, 4, 3\].*\[N, 32, 4, 4\]"):
        await cloud_client.infer("digits-cnn", good[..., :3].copy())
    with pytest.raises(InvalidInput, match="HTTP 422: array has dtype <f8"):
        await cloud_client.infer("digits-cnn", good.astype(np.float64))
    with pytest.raises(ModelNotFound, match="HTTP 404"):
        await cloud_client.infer("vgg16", good)
    with pytest.raises(InvalidInput, match="HTTP 413"):
        await cloud_client.infer("digits-cnn", np.zeros((1, 2, 1024, 1024), np.float32))
    async with CloudClient(cloud.url) as anonymous:
        with pytest.raises(Unauthorized, match="HTTP 401: missing bearer token"):
            await anonymous.infer("digits-cnn", good)
        assert await anonymous.ready()
    r = httpx.post(f"{cloud.url}/v1/infer/digits-cnn", content=wire.encode(good)[:-1],
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422 and "truncated" in r.json()["error"]
    assert (await cloud_client.infer("digits-cnn", good)).shape == (1, 10)
    assert "edgesplit_cloud_infer_seconds_count" in await cloud_client.metrics_text()


@pytest.mark.parametrize("name", ["digits-cnn", "alexnet-paper"])
async def test_a_dads_cut_inside_the_convs_runs_the_rest_of_the_model_exactly(cloud_client: CloudClient,
                                                                              name: str) -> None:
    spec = get_spec(name)
    module = build_module(spec, seed=0).requires_grad_(False)
    x = torch.randn(2, *spec.input, generator=torch.Generator().manual_seed(2))
    cut = spec.conv_indices()[1]  # the second conv: inside the edge part
    assert 0 < cut < spec.n_edge
    for start in (0, cut, spec.n_edge):
        logits = await cloud_client.infer(name, module[:start](x).contiguous().numpy(), start=start)
        torch.testing.assert_close(torch.from_numpy(logits), module(x), rtol=1e-4, atol=1e-4)


async def test_a_bad_start_or_a_map_of_the_wrong_layer_is_422(cloud_client: CloudClient) -> None:
    spec = get_spec("digits-cnn")
    cut = spec.conv_indices()[1]
    c, h, w = spec.shapes()[cut]
    with pytest.raises(InvalidInput, match=rf"HTTP 422: start {spec.n_edge + 1} is out of range: 0 to "):
        await cloud_client.infer(spec.name, np.zeros((1, *spec.feature_shape), np.float32),
                                 start=spec.n_edge + 1)
    with pytest.raises(InvalidInput, match=r"HTTP 422: start -1 is out of range"):
        await cloud_client.infer(spec.name, np.zeros((1, c, h, w), np.float32), start=-1)
    with pytest.raises(InvalidInput, match=rf"HTTP 422: .*\[N, {c}, {h}, {w}\] \(the input of layer {cut}\)"):
        await cloud_client.infer(spec.name, np.zeros((1, *spec.feature_shape), np.float32), start=cut)
    with pytest.raises(InvalidInput, match="HTTP 422"):  # flattened maps only for the cloud part
        await cloud_client.infer(spec.name, np.zeros((1, c * h * w), np.float32), start=cut)
