"""Async client of the cloud service (the orchestrator's last stage).

Share one pooled HTTP session per process (``http=``, see ``services.common.http``).
Errors: the domain error the service answered with, carrying its message (``ModelNotFound``,
``InvalidInput``, ``Unauthorized``...), or ``Unavailable`` when it cannot be reached in time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgesplit import wire
from services.common.http import DEFAULT_TIMEOUT_S, HttpPool, ServiceClient


class CloudClient(ServiceClient):
    """Client of the cloud service at ``base_url`` (e.g. ``http://127.0.0.1:8200``); ``timeout_s`` per
    call in seconds; ``token`` the bearer token or None; ``http`` the process's shared client."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 http: HttpPool | None = None) -> None:
        super().__init__(base_url, token, timeout_s, http)

    async def infer(self, model: str, features: np.ndarray, start: int | None = None,
                    priority: int | None = None) -> np.ndarray:
        """Logits (N, num_classes) float32 of ``module[start:]`` on ``features`` (default
        ``start = spec.n_edge``: the cloud part).

        ``features``: float32, the input map of layer ``start`` (N, C, H, W): by default the merged output
        of the last edge layer, then also flattened (N, F). A ``start`` inside the edge part (a DADS cut)
        makes the cloud run the remaining convs too; out of ``[0, n_edge]`` it is ``InvalidInput``.
        ``priority`` (1 the most urgent): the cloud computes the most urgent waiting request first.
        """
        params = {k: int(v) for k, v in (("start", start), ("priority", priority)) if v is not None}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        path = f"/v1/infer/{model}" + (f"?{query}" if query else "")
        answer = await self.request("POST", path, content=wire.encode(features),
                                    headers={"Content-Type": wire.CONTENT_TYPE})
        return wire.decode(answer.body, expect_shape=(features.shape[0], None))

    async def info(self) -> dict[str, Any]:
        """Name, threads and the deployed models (feature shape, classes, weights source)."""
        result: dict[str, Any] = await self.json("GET", "/v1/info")
        return result
