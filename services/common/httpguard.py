"""HTTP/1.1 limits uvicorn does not have: header size and count, header and body read timeouts.

uvicorn (httptools) reads headers of any size and waits forever for the rest of a request whose
headers or body stall (a slow client, "slowloris"): only the idle time *between* requests is bounded
(``timeout_keep_alive``). :func:`guarded_protocol` returns uvicorn's httptools protocol with:

* **header time**: from a connection's opening (or a request's first byte on a kept-alive connection)
  to the end of its headers, at most ``header_timeout_s``; else **408** and the connection closes;
* **body silence**: inside a body, at most ``body_timeout_s`` without a byte (time when the server
  itself stopped reading, because the app has not consumed what came, does not count); else **408**
  (or a plain close once the answer has started);
* **header size**: request line plus header fields above ``max_header_bytes``: **431** (414 for the
  request line alone); more than ``max_headers`` fields: **431**;
* every refusal, and uvicorn's own "invalid HTTP request", answers JSON ``{"error": "..."}`` with
  ``Connection: close``.

The server passes the class to uvicorn as its ``http`` protocol (``services.common.serve``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

_HEAD, _BODY, _IDLE = "head", "body", "idle"


@dataclass(frozen=True)
class HttpLimits:
    """Per-request limits (seconds, bytes, fields); see the module docstring."""

    header_timeout_s: float = 4.0
    body_timeout_s: float = 4.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; the refusal is in ``_refusal``."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :class:`HttpLimits` (module docstring)."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: asyncio.TimerHandle | None = None
        self._phase = _IDLE
        self._head_started = 0.0
        self._body_at = 0.0
        self._head_bytes = 0  # request line + header fields parsed so far
        self._head_raw = 0  # raw bytes of chunks that ended still inside the headers
        self._head_count = 0
        self._refusal: tuple[int, str] | None = None

    # --- timers -------------------------------------------------------------------------------------

    def _arm(self, delay: float) -> None:
        self._cancel()
        self._guard = self.loop.call_later(max(delay, 0.0), self._expired)

    def _cancel(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _start_head(self) -> None:
        self._phase = _HEAD
        self._head_started = self.loop.time()
        self._head_bytes = self._head_raw = self._head_count = 0

    def _expired(self) -> None:
        self._guard = None
        now, lim = self.loop.time(), self.limits
        if self._phase == _HEAD:
            left = self._head_started + lim.header_timeout_s - now
            if left > 0:
                self._arm(left)
                return
            self._refuse_now(408, f"request headers did not arrive within {lim.header_timeout_s:g} s")
        elif self._phase == _BODY:
            waiting = self.cycle is not None and self.cycle.waiting_for_100_continue
            if waiting or (self.flow is not None and self.flow.read_paused):  # the server's wait, not
                self._body_at = now  # the client's: it has not read what came, or not said 100 yet
            left = self._body_at + lim.body_timeout_s - now
            if left > 0:
                self._arm(left)
                return
            self._refuse_now(408, f"request body stalled: no byte for {lim.body_timeout_s:g} s")

    # --- uvicorn protocol hooks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()  # a connection that never sends a request is closed too
        self._arm(self.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        self._phase = _IDLE
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        was_head = self._phase == _HEAD
        super().data_received(data)
        if self._refusal is not None or self.transport.is_closing():
            return
        if self._phase == _HEAD:
            if was_head:  # the whole chunk belonged to headers that are still incomplete
                self._head_raw += len(data)
                if self._head_raw > self.limits.max_header_bytes:
                    self._refuse_now(431, self._too_large_text())
                    return
            if self._guard is None:
                self._arm(self._head_started + self.limits.header_timeout_s - self.loop.time())
        elif self._phase == _BODY and self._guard is None:
            self._arm(self.limits.body_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != _HEAD:
            self._start_head()

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse(414, f"request line is longer than {self.limits.max_header_bytes} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        self._head_count += 1
        if self._head_count > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} header fields; send fewer")
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse(431, self._too_large_text())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel()
        self._phase, self._body_at = _BODY, self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel()
        self._phase = _IDLE
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused; ours when a limit stopped the parser."""
        status, text = self._refusal or (400, "malformed HTTP/1.1 request: expected a request line, "
                                              "header fields and a body framed by Content-Length or chunks")
        self._write_error(status, text)

    # --- refusals -----------------------------------------------------------------------------------

    def _too_large_text(self) -> str:
        return (f"request line and header fields are larger than {self.limits.max_header_bytes} bytes; "
                "send smaller headers")

    def _refuse(self, status: int, text: str) -> None:
        """Inside a parser callback: remember the refusal and stop the parser (uvicorn then calls
        ``send_400_response``, which answers it)."""
        self._refusal = (status, text)
        raise _Refused(text)

    def _refuse_now(self, status: int, text: str) -> None:
        self._refusal = (status, text)
        self._write_error(status, text)

    def _write_error(self, status: int, text: str) -> None:
        self._cancel()
        # in the headers of a new request, self.cycle is the previous (answered) request's; in a body,
        # it is this request's, and an answer already begun (or sent) cannot be followed by another
        current = self._phase != _HEAD and self.cycle is not None
        self._phase = _IDLE
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app's receive() now sees a disconnect
            self.cycle.message_event.set()
        if self.cycle is not None and (current or not self.cycle.response_complete) \
                and self.cycle.response_started:
            self.transport.close()
            return
        kind = "BadRequest" if status == 400 else "RequestRefused"
        body = json.dumps({"error": text, "type": kind}).encode()
        head = [STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n", b"connection: close\r\n", b"\r\n"]
        if not self.transport.is_closing():
            self.transport.write(b"".join(head) + body)
            self.transport.close()


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to give uvicorn (``uvicorn.run(..., http=...)``) for these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
