"""Async client of an executor, used by the orchestrator, the allocator and the benchmarks.

Share one pooled HTTP session per process (``services.common.http``)::

    http = new_http_client()
    ex = ExecutorClient("http://10.0.0.5:8101", token=TOKEN, http=http)
    y = await ex.run_slice("alexnet-paper", sl, x, subzone=1, task_id="t-42")

Every method raises the domain error the executor answered with (``ModelNotFound``, ``InvalidInput``,
``InvalidPlan``, ``CapacityExceeded``, ``Unauthorized``, ``BodyTooLarge``...) carrying its message,
or ``Unavailable`` when the executor cannot be reached or does not answer within ``timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgesplit import wire
from edgesplit.split import Slice
from services.common.http import DEFAULT_TIMEOUT_S, HttpPool, ServiceClient

_NPY = {"Content-Type": wire.CONTENT_TYPE}


@dataclass(frozen=True)
class SliceResult:
    """A computed slice and what the executor reported: seconds waiting for the sub-zone, seconds
    computing (fault-injection delay included) and the worker threads that computed it."""

    output: np.ndarray
    wait_s: float
    compute_s: float
    workers: int


class ExecutorClient(ServiceClient):
    """Client of one executor at ``base_url`` (e.g. ``http://127.0.0.1:8101``).

    ``token``: bearer token (None when the executor has none); ``timeout_s``: per call, seconds,
    queueing in the sub-zone included; ``http``: the process's shared ``HttpPool``.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 http: HttpPool | None = None) -> None:
        super().__init__(base_url, token, timeout_s, http)

    async def run_slice_timed(self, model: str, slice: Slice, x: np.ndarray, subzone: int,
                              task_id: str = "", priority: int | None = None) -> SliceResult:
        """Like :meth:`run_slice`, with the executor's timings; ``priority`` (the task's, 1 the most
        urgent) lets an urgent slice run on the executor's urgent lane."""
        params = wire.slice_to_params(slice)
        params["subzone"] = str(subzone)
        if task_id:
            params["task_id"] = task_id
        if priority is not None:
            params["priority"] = str(priority)
        answer = await self.request("POST", f"/v1/slices/{model}", params=params, content=wire.encode(x),
                                    headers=_NPY)
        out = wire.decode(answer.body, expect_shape=(x.shape[0], None, None, None))
        h = answer.headers
        return SliceResult(out, float(h.get("x-wait-seconds", 0)), float(h.get("x-compute-seconds", 0)),
                           int(h.get("x-workers", 0)))

    async def run_slice(self, model: str, slice: Slice, x: np.ndarray, subzone: int,
                        task_id: str = "") -> np.ndarray:
        """Compute ``slice`` of ``model`` on the executor, in sub-zone ``subzone`` (the stage index).

        ``x`` (float32, (N, C, H, W)) holds exactly ``slice.in_rows`` (and ``slice.in_channels``) of
        the group's input, i.e. ``crop_input(x_full, slice)``; the answer is the slice's output of
        shape ``slice.out_shape(spec, N)`` as a writable float32 array (``torch.from_numpy`` takes it
        without a copy).
        """
        return (await self.run_slice_timed(model, slice, x, subzone, task_id)).output

    async def echo(self, x: np.ndarray) -> np.ndarray:
        """Send ``x`` through the executor's request path without compute; get it back (benchmarks)."""
        answer = await self.request("POST", "/v1/echo", content=wire.encode(x), headers=_NPY)
        return wire.decode(answer.body, expect_dtype=None)

    async def get_quotas(self, owner: str | None = None) -> dict[str, dict[int, int]]:
        """Threads per sub-zone ``{model: {subzone: threads}}`` in force (sub-zones not listed have 1),
        or as ``owner`` (``services.common.channels.QUOTA_OWNERS``) set them."""
        return _parse_quotas(await self.json("GET", _quotas_path(owner)))

    async def put_quotas(self, quotas: dict[str, dict[int, int]],
                         owner: str | None = None) -> dict[str, dict[int, int]]:
        """Replace ``owner``'s quotas (None: every owner's); returns the quotas in force. Raises
        CapacityExceeded when those would sum above the executor's capacity."""
        body = {m: {str(i): int(k) for i, k in q.items()} for m, q in quotas.items()}
        return _parse_quotas(await self.json("PUT", _quotas_path(owner), body))

    async def info(self) -> dict[str, Any]:
        """Name, ``capacity`` (threads), deployed models, quotas, zones and measured ``flops_per_thread``."""
        result: dict[str, Any] = await self.json("GET", "/v1/info")
        return result


def _quotas_path(owner: str | None) -> str:
    return "/v1/quotas" if owner is None else f"/v1/quotas/{owner}"


def _parse_quotas(raw: dict[str, dict[str, int]]) -> dict[str, dict[int, int]]:
    return {m: {int(i): int(k) for i, k in q.items()} for m, q in raw.items()}
