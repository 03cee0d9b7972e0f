"""Bearer-token authentication and the request-body size limit.

The limit is enforced twice, both before a body is held whole: :class:`BodySizeLimit` answers 413 as
soon as a ``Content-Length`` above the limit arrives, and counts the bytes of bodies streamed without
one (chunked), failing the read at the first byte past the limit; :func:`read_body` reads a body
into one preallocated ``bytearray`` (so the NPY decode can give a writable array without a copy).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgesplit.errors import InvalidInput
from services.common.errors import BodyTooLarge, Unauthorized, error_response


def bearer_auth(token: str | None, *others: str | None) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency refusing requests without ``Authorization: Bearer <token>`` (401).

    ``others``: more accepted tokens (one per caller: the executor takes the orchestrator's and the
    allocator's). With ``token`` None every request passes (development only; settings warn about it).
    The header is read by ``fastapi.security.HTTPBearer``, so OpenAPI documents the scheme.
    """
    expected = [t.encode() for t in (token, *others) if t]
    scheme = HTTPBearer(auto_error=False, description="the service's bearer token")

    async def open_(request: Request) -> None:
        return None

    # a default, not Annotated: annotations are strings here and ``scheme`` is local to this function
    async def check(request: Request,
                    credentials: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        if credentials is None:
            if request.headers.get("authorization") is None:
                raise Unauthorized("missing bearer token: send the header 'Authorization: Bearer <token>'")
            raise Unauthorized("invalid bearer token")
        if request.headers["authorization"] != f"{credentials.scheme} {credentials.credentials}":
            raise Unauthorized("invalid bearer token")  # padded or split: not the exact token
        raw = credentials.credentials.encode("latin1", "replace")
        # every candidate is compared (no early exit), so timing does not tell which one nearly matched
        if not sum(hmac.compare_digest(raw, e) for e in expected):
            raise Unauthorized("invalid bearer token")

    return check if token else open_


def _too_large(limit: int, size: int | None = None) -> BodyTooLarge:
    got = f" of {size} bytes" if size is not None else ""
    return BodyTooLarge(f"request body{got} is above the limit of {limit} bytes (max_body_bytes)")


class BodySizeLimit:
    """ASGI middleware: 413 for a Content-Length above ``limit``; counts streamed bodies too."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                size = int(value) if value.isdigit() else -1
                if size < 0 or size > self.limit:
                    await error_response(_too_large(self.limit, size if size >= 0 else None))(
                        scope, receive, send)
                    return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _too_large(self.limit)
            return message

        await self.app(scope, counted, send)


PREALLOCATE_MAX = 4 * 1024 * 1024  # a declared size is trusted this far before any byte arrived


async def read_body(request: Request, limit: int) -> bytearray:
    """The whole body in one ``bytearray``, preallocated from Content-Length when there is one.

    Only up to :data:`PREALLOCATE_MAX`: a larger body grows as its bytes arrive, so that a client
    declaring the limit and sending nothing costs no memory (many such at once would otherwise
    reserve ``limit`` bytes each until the body timeout cuts them off).
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > PREALLOCATE_MAX:
        if int(length) > limit:
            raise _too_large(limit, int(length))
        length = None  # read as it comes, checked against the limit as below
    if length is None or not length.isdigit():
        buf = bytearray()
        async for chunk in request.stream():
            buf += chunk
            if len(buf) > limit:
                raise _too_large(limit)
        return buf
    size = int(length)
    if size > limit:
        raise _too_large(limit, size)
    out = bytearray(size)
    view = memoryview(out)
    at = 0
    async for chunk in request.stream():
        n = len(chunk)
        if at + n > size:
            raise BodyTooLarge(f"request body is longer than its Content-Length of {size} bytes")
        view[at : at + n] = chunk
        at += n
    if at != size:  # the server (h11/httptools) normally catches this first
        raise InvalidInput(f"request body of {at} bytes is shorter than its Content-Length of {size}")
    return out
