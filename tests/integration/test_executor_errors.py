"""Bad requests to a real executor get a 4xx with a message, and the executor keeps serving others."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import numpy as np
import pytest

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.split import make_slices
from tooling.proc import ServiceProcess

pytestmark = [pytest.mark.services, pytest.mark.anyio]
SPEC = get_spec("digits-cnn")
SLICE = make_slices(SPEC, 0, 2, "rows", [3, 5])[1]  # rows [3, 8) of conv1 + relu
GOOD_X = np.ones(SLICE.in_shape(SPEC, 2), np.float32)
PARAMS = {**wire.slice_to_params(SLICE), "subzone": "0"}
URL = "/v1/slices/digits-cnn"


def raw_npy(descr: str, fortran: bool, shape: tuple[int, ...], nbytes: int) -> bytes:
    """An NPY v1 body written by hand (to send what ``wire.encode`` never writes)."""
    text = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() + b"\x00" * nbytes


@pytest.fixture
async def http(executors: list[ServiceProcess], token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=executors[0].url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30) as client:
        yield client


async def assert_still_serving(http: httpx.AsyncClient) -> None:
    r = await http.post(URL, params=PARAMS, content=wire.encode(GOOD_X))
    assert r.status_code == 200, r.text
    assert wire.decode(r.content).shape == SLICE.out_shape(SPEC, 2)


def _bad_requests() -> Iterator[tuple[str, dict[str, str], bytes, int, str]]:
    good = wire.encode(GOOD_X)
    yield "wrong dtype", PARAMS, wire.encode(GOOD_X.astype(np.float64)), 422, "expected <f4 (float32)"
    yield "wrong shape", PARAMS, wire.encode(GOOD_X[:, :, :-1]), 422, "[2, 1, 5, 8], expected [N, 1, 6, 8]"
    yield "unknown layer range", {**PARAMS, "stop": "9"}, good, 422, "not inside the edge layers [0, 5)"
    yield "rows out of range", {**PARAMS, "out_rows": "3,12"}, good, 422, "out rows [3, 12) out of range"
    yield "inconsistent rows", {**PARAMS, "in_rows": "3,8"}, good, 422, "does not match"
    yield "missing metadata", {"subzone": "0"}, good, 422, "missing slice parameter 'start'"
    yield "sub-zone out of range", {**PARAMS, "subzone": "7"}, good, 422, "sub-zone 7 out of range"
    yield "truncated NPY", PARAMS, good[:-7], 422, "truncated NPY body"
    yield "not NPY", PARAMS, b"P6 8 8 255\n" + b"\x00" * 192, 422, "magic bytes"
    yield "fortran order", PARAMS, raw_npy("<f4", True, GOOD_X.shape, GOOD_X.nbytes), 422, "Fortran order"


@pytest.mark.parametrize(("what", "params", "body", "status", "message"), list(_bad_requests()),
                         ids=[c[0] for c in _bad_requests()])
async def test_bad_slice_requests_get_4xx_with_a_message(http: httpx.AsyncClient, what: str,
                                                         params: dict[str, str], body: bytes, status: int,
                                                         message: str) -> None:
    r = await http.post(URL, params=params, content=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    await assert_still_serving(http)


async def test_unknown_model_is_404(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/slices/resnet50", params=PARAMS, content=wire.encode(GOOD_X))
    assert r.status_code == 404 and "'resnet50' is not deployed" in r.json()["error"]
    await assert_still_serving(http)


async def test_token_is_required_except_for_health(executors: list[ServiceProcess]) -> None:
    async with httpx.AsyncClient(base_url=executors[0].url) as bare:
        for method, path in [("POST", URL), ("GET", "/v1/quotas"), ("PUT", "/v1/quotas"), ("GET", "/metrics"),
                             ("GET", "/v1/info"), ("POST", "/v1/echo")]:
            r = await bare.request(method, path, params=PARAMS, content=wire.encode(GOOD_X))
            assert r.status_code == 401 and "missing bearer token" in r.json()["error"], (path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
        r = await bare.post(URL, params=PARAMS, content=wire.encode(GOOD_X),
                            headers={"Authorization": "Bearer wrong-token-wrong-token"})
        assert r.status_code == 401 and r.json()["error"] == "invalid bearer token"
        assert (await bare.get("/v2/health/live")).status_code == 200
        assert (await bare.get("/v2/health/ready")).json() == {"ready": True}


async def test_too_large_bodies_are_refused_before_being_read(http: httpx.AsyncClient) -> None:
    big = b"\x00" * (4 * 1024 * 1024 + 1)  # the executors' max_body_bytes is 4 MiB
    r = await http.post(URL, params=PARAMS, content=big)
    assert r.status_code == 413 and "above the limit of 4194304 bytes" in r.json()["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(5):
            yield b"\x00" * (1024 * 1024)

    r = await http.post(URL, params=PARAMS, content=chunked())
    assert r.status_code == 413 and "above the limit" in r.json()["error"]
    await assert_still_serving(http)


async def test_other_media_types_are_415(http: httpx.AsyncClient) -> None:
    r = await http.post(URL, params=PARAMS, content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 415 and "application/x-npy" in r.json()["error"]
