"""The base of the services' async clients: one pooled HTTP session per process, bearer token, errors.

The internal calls (orchestrator -> executors and cloud, allocator -> executors) go through one
``aiohttp`` session per process (:class:`HttpPool`, from :func:`new_http_client`), passed to every
client the process builds (``http=``); a client built without one creates its own and closes it in
:meth:`ServiceClient.aclose`. A new session per call costs ~25 ms (DESIGN.md section 5).

Why aiohttp and not httpx: one loopback round trip of a 1x256x18x18 float32 NPY body to a bare
uvicorn echo took 1.56 ms with an aiohttp session and 3.62 ms with an ``httpx.AsyncClient`` on the
2-core development machine (medians of 300, same server, same run: ``edgesplit bench rpc``;
``docs/BENCHMARKS.md``, RPC section). A task crosses two to six such calls, so that difference is a
visible share of the end-to-end latency.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, NamedTuple

import aiohttp

from edgesplit.errors import Unavailable, Unreachable
from services.common import tracing
from services.common.errors import error_from_response

DEFAULT_TIMEOUT_S = 30.0


class Answer(NamedTuple):
    """An HTTP answer: status, headers (case-insensitive mapping) and the body in a writable buffer."""

    status: int
    headers: Mapping[str, str]
    body: bytearray


class HttpPool:
    """A process's pooled HTTP session (keep-alive connections to every service).

    The ``aiohttp`` session is made on first use, inside the running event loop (a session is bound
    to the loop that made it); :meth:`aclose` closes it and a later call makes a new one.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, max_connections: int = 256) -> None:
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0,
                                             keepalive_timeout=60.0)
            self._session = aiohttp.ClientSession(connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def fetch(self, method: str, url: str, *, params: Mapping[str, str] | None = None,
                    content: bytes | None = None, json_body: Any = None,
                    headers: Mapping[str, str] | None = None, timeout_s: float | None = None) -> Answer:
        """Send one request and read the whole answer; ``Unavailable`` when the server cannot be
        reached or does not answer within ``timeout_s`` (default: the pool's)."""
        limit = timeout_s or self.timeout_s
        try:
            async with self.session.request(method, url, params=params, data=content, json=json_body,
                                            headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=limit)) as response:
                body = await _read_all(response)
                return Answer(response.status, response.headers, body)
        except TimeoutError as e:
            raise Unavailable(f"{url} did not answer within {limit} s") from e
        except aiohttp.ClientConnectorError as e:  # nothing listens there (a dead process)
            raise Unreachable(f"{url} does not answer: {type(e).__name__}: {e}") from e
        except aiohttp.ClientError as e:
            raise Unavailable(f"{url} does not answer: {type(e).__name__}: {e}") from e

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def new_http_client(timeout_s: float = DEFAULT_TIMEOUT_S, max_connections: int = 256) -> HttpPool:
    """A pooled HTTP session for a whole process (keep-alive connections to every service)."""
    return HttpPool(timeout_s, max_connections)


async def _read_all(response: aiohttp.ClientResponse) -> bytearray:
    """The response body in one writable buffer (preallocated from Content-Length when given), so
    the NPY decoded from it can back a tensor without another copy."""
    length = response.content_length
    if length is None or response.headers.get("content-encoding"):
        return bytearray(await response.read())
    out = bytearray(length)
    view = memoryview(out)
    at = 0
    async for chunk in response.content.iter_any():
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
                 http: HttpPool | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._own = http is None
        self._http = http if http is not None else new_http_client(timeout_s)
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    async def aclose(self) -> None:
        """Close the HTTP session if this object created it (a shared one is left open)."""
        if self._own:
            await self._http.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      content: bytes | None = None, json_body: Any = None,
                      headers: dict[str, str] | None = None, timeout_s: float | None = None) -> Answer:
        """Send one request; return the answer, or raise the matching domain error."""
        url = f"{self.base_url}{path}"
        sent = {**self._auth, **(headers or {})}
        tracing.inject(sent)  # W3C traceparent of the current span, when tracing is on
        answer = await self._http.fetch(method, url, params=params, content=content, json_body=json_body,
                                        headers=sent, timeout_s=timeout_s or self.timeout_s)
        if answer.status >= 400:
            try:
                payload = json.loads(answer.body)
            except ValueError:
                payload = {"error": answer.body[:200].decode("utf-8", "replace")}
            raise error_from_response(answer.status, payload, answer.headers, url)
        return answer

    async def json(self, method: str, path: str, json_body: Any = None) -> Any:
        """A JSON request/answer."""
        return json.loads((await self.request(method, path, json_body=json_body)).body)

    async def metrics_text(self) -> str:
        """The Prometheus exposition text of ``GET /metrics``."""
        return (await self.request("GET", "/metrics")).body.decode()

    async def live(self) -> bool:
        """True when ``GET /v2/health/live`` answers 200."""
        return await self._probe("/v2/health/live")

    async def ready(self) -> bool:
        """True when ``GET /v2/health/ready`` answers 200 (weights loaded); False otherwise, never raises."""
        return await self._probe("/v2/health/ready")

    async def _probe(self, path: str) -> bool:
        try:
            answer = await self._http.fetch("GET", f"{self.base_url}{path}",
                                            timeout_s=min(self.timeout_s, 5.0))
        except Unavailable:
            return False
        return answer.status == 200
