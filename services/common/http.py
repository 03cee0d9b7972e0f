"""The base of the services' async clients: one pooled ``httpx.AsyncClient``, bearer token, errors.

A new ``httpx.AsyncClient`` per call costs ~25 ms (DESIGN.md section 5), so a process creates one
with :func:`new_http_client` and passes it to every client it builds (``http=``); a client built
without one creates its own and closes it in :meth:`ServiceClient.aclose`.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

import httpx

from edgesplit.errors import Unavailable
from services.common.errors import error_from_response

DEFAULT_TIMEOUT_S = 30.0


def new_http_client(timeout_s: float = DEFAULT_TIMEOUT_S, max_connections: int = 256) -> httpx.AsyncClient:
    """A pooled async HTTP client for a whole process (keep-alive connections to every service)."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits)


async def _read_all(response: httpx.Response) -> bytearray:
    """The response body in one writable buffer (preallocated from Content-Length when given)."""
    length = response.headers.get("content-length")
    if length is None or response.headers.get("content-encoding"):
        buf = bytearray()
        async for chunk in response.aiter_bytes():
            buf += chunk
        return buf
    out = bytearray(int(length))
    view = memoryview(out)
    at = 0
    async for chunk in response.aiter_raw():
        view[at : at + len(chunk)] = chunk
        at += len(chunk)
    return out[:at] if at != len(out) else out


class ServiceClient:
    """Common plumbing of the executor and cloud clients. Errors become domain exceptions.

    An error answer raises the domain error the server named (``ModelNotFound``, ``InvalidInput``,
    ``CapacityExceeded``...) with the server's message; a service that does not answer in
    ``timeout_s`` seconds, or cannot be reached, raises ``Unavailable``.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 http: httpx.AsyncClient | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._own = http is None
        self._http = http if http is not None else new_http_client(timeout_s)
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it (a shared one is left open)."""
        if self._own:
            await self._http.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      content: bytes | None = None, json_body: Any = None,
                      headers: dict[str, str] | None = None,
                      timeout_s: float | None = None) -> tuple[httpx.Response, bytearray]:
        """Send one request; return the response and its body, or raise the matching domain error."""
        url = f"{self.base_url}{path}"
        hdrs = {**self._auth, **(headers or {})}
        timeout = httpx.Timeout(timeout_s or self.timeout_s)
        try:
            async with self._http.stream(method, url, params=params, content=content, json=json_body,
                                         headers=hdrs, timeout=timeout) as response:
                body = await _read_all(response)
        except httpx.TimeoutException as e:
            raise Unavailable(f"{url} did not answer within {timeout_s or self.timeout_s} s") from e
        except httpx.TransportError as e:
            raise Unavailable(f"{url} does not answer: {type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = {"error": body[:200].decode("utf-8", "replace")}
            raise error_from_response(response.status_code, payload, response.headers, url)
        return response, body

    async def json(self, method: str, path: str, json_body: Any = None) -> Any:
        """A JSON request/answer."""
        _, body = await self.request(method, path, json_body=json_body)
        return json.loads(body)

    async def metrics_text(self) -> str:
        """The Prometheus exposition text of ``GET /metrics``."""
        _, body = await self.request("GET", "/metrics")
        return body.decode()

    async def live(self) -> bool:
        """True when ``GET /v2/health/live`` answers 200."""
        return await self._probe("/v2/health/live")

    async def ready(self) -> bool:
        """True when ``GET /v2/health/ready`` answers 200 (weights loaded); False otherwise, never raises."""
        return await self._probe("/v2/health/ready")

    async def _probe(self, path: str) -> bool:
        try:
            response = await self._http.get(f"{self.base_url}{path}", timeout=min(self.timeout_s, 5.0))
        except httpx.HTTPError:
            return False
        return response.status_code == 200
