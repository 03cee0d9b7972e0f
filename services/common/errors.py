"""Errors of the HTTP layer and their one mapping to JSON ``{"error": "..."}`` responses.

Every service installs :func:`install_error_handlers` once: a domain error (``EdgesplitError``) answers
with its ``status`` and message, request-validation errors with 422, HTTP errors with their status,
anything else (a bug) with a JSON 500 that names the exception's class.
The body also names the error class (``"type"``) so clients can raise the same domain error.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from edgesplit import errors as domain
from edgesplit.errors import (
    BodyTooLarge,
    EdgesplitError,
    InvalidInput,
    QueueFull,
    Unauthorized,
    UnsupportedMediaType,
)

# the HTTP layer's own errors live with the domain's (one module of error classes, one lookup by name)
__all__ = ["BodyTooLarge", "Unauthorized", "UnsupportedMediaType", "error_from_response", "error_response",
           "install_error_handlers"]


def error_response(exc: EdgesplitError) -> JSONResponse:
    """The JSON answer for a domain error, with Retry-After for QueueFull and WWW-Authenticate for 401."""
    headers: dict[str, str] = {}
    if isinstance(exc, QueueFull | domain.Overloaded):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=exc.status,
                        headers=headers)


async def _domain_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EdgesplitError)
    return error_response(exc)


async def _validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return JSONResponse({"error": "; ".join(parts) or "invalid request", "type": "InvalidInput"},
                        status_code=422)


async def _http_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _disconnect_handler(_request: Request, _exc: Exception) -> JSONResponse:
    # the client went away (or was cut off for a stalled body) while its body was read: the answer
    # reaches nobody, but the request ends as a client error instead of a logged 500
    return JSONResponse({"error": "client disconnected before its request body was read",
                         "type": "InvalidInput"}, status_code=400)


async def _internal_handler(_request: Request, exc: Exception) -> JSONResponse:
    # a bug, not the client's fault: still the API's JSON shape (not Starlette's plain text), naming
    # the exception class; the server re-raises it after this answer, so its log has the traceback
    return JSONResponse({"error": f"internal error ({type(exc).__name__}); the server's log has the "
                                  "details", "type": "InternalError"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain, validation and HTTP errors to ``{"error": "..."}`` with the right status, and any
    other exception to a JSON 500."""
    app.add_exception_handler(Exception, _internal_handler)
    app.add_exception_handler(EdgesplitError, _domain_handler)
    app.add_exception_handler(ClientDisconnect, _disconnect_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HTTPException, _http_handler)


_BY_STATUS: dict[int, type[EdgesplitError]] = {
    400: InvalidInput, 401: Unauthorized, 404: domain.ModelNotFound, 409: domain.Conflict,
    413: BodyTooLarge, 415: UnsupportedMediaType, 422: InvalidInput, 429: QueueFull,
    503: domain.Unavailable, 504: domain.TaskExpired,
}


def error_from_response(status: int, payload: object, headers: Mapping[str, str], url: str) -> EdgesplitError:
    """The domain error a client raises for an error answer, carrying the server's message."""
    message = payload.get("error") if isinstance(payload, dict) else None
    kind = payload.get("type") if isinstance(payload, dict) else None
    text = f"{url}: HTTP {status}: {message or 'no error message'}"
    cls = getattr(domain, str(kind), None)
    if not (isinstance(cls, type) and issubclass(cls, EdgesplitError)):
        cls = _BY_STATUS.get(status, EdgesplitError)
    if cls is QueueFull or cls is domain.Overloaded:
        return cls(text, float(headers.get("retry-after", "1") or 1))  # type: ignore[call-arg]
    err = cls(text)
    if cls is EdgesplitError:
        err.status = status
    return err
