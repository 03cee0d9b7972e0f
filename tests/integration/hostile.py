"""Hostile requests, as raw HTTP/1.1 bytes, for the suite in ``test_hostile.py`` (issue 15).

Each :class:`Case` is sent on its own TCP connection to a real process of a local stack (orchestrator,
executor or cloud); :func:`send` reads the answer until the server closes the connection and reports
its status, or ``None`` when the server closed without answering, and whether it hung (no answer and
no close within ``HANG_S``). Slow clients send their bytes in parts with pauses.
"""

from __future__ import annotations

import io
import select
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

HANG_S = 12.0  # an answer or a close must come before this (the services cut slow clients at 4 s)


@dataclass(frozen=True)
class Case:
    """One hostile request: ``target`` is ``orch``, ``exec`` or ``cloud``; ``expect``: the statuses
    allowed (empty: any 4xx)."""

    name: str
    target: str
    parts: tuple[tuple[bytes, float], ...]
    expect: tuple[int, ...] = ()


@dataclass
class Outcome:
    case: Case
    status: int | None
    seconds: float
    hung: bool
    head: bytes = field(default=b"", repr=False)


def request(method: str, path: str, headers: dict[str, str] | list[tuple[str, str]] | None = None,
            body: bytes = b"", length: bool = True) -> bytes:
    """Raw request bytes; ``Content-Length`` added unless ``length`` is False; ``Connection: close``."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in items)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin1") + body


def case(name: str, target: str, raw: bytes, expect: tuple[int, ...] = ()) -> Case:
    return Case(name, target, ((raw, 0.0),), expect)


def send(port: int, c: Case) -> Outcome:
    started = time.monotonic()
    data = b""
    hung = False
    with socket.create_connection(("127.0.0.1", port), timeout=HANG_S) as s:
        try:
            for chunk, pause in c.parts:
                if select.select([s], [], [], 0)[0]:
                    break  # the server has answered (or closed): stop sending, read it
                if chunk:
                    s.sendall(chunk)
                if pause:
                    time.sleep(pause)
            s.settimeout(max(0.1, HANG_S - (time.monotonic() - started)))
            while True:
                got = s.recv(65536)
                if not got:
                    break
                data += got
        except TimeoutError:
            hung = True
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server closed while we were still sending: what it answered is in data
    status = None
    if data.startswith(b"HTTP/1.1 "):
        status = int(data[9:12])
    return Outcome(c, status, time.monotonic() - started, hung, data[:400])


# --- bodies ---------------------------------------------------------------------------------------

def npy(header: str, data: bytes = b"\x00" * 16) -> bytes:
    text = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    raw = text.encode("utf-8")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + data


def hdr(descr: str, shape: str, fortran: str = "False") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


# the NPY headers that made the literal parser or numpy raise (issue 15), and their relatives
BAD_NPY: dict[str, bytes] = {
    "descr-tuple": npy(hdr("('<f4', -1)", "(3, 32, 32)")),
    "shape-2^31-squared": npy(hdr("'<f4'", "(2147483648, 2147483648)")),
    "shape-70-dims": npy(hdr("'<f4'", "(" + "1, " * 70 + ")")),
    "shape-0-by-2^63": npy(hdr("'<f4'", "(0, 9223372036854775807)"), b""),
    "void-0-of-2^63": npy(hdr("'V0'", "(9223372036854775807,)"), b""),
    "nested-3900-chars": npy(hdr("'<f4'", "[" * 1900 + "]" * 1900)),
    "object-dtype": npy(hdr("'|O'", "(1,)"), b"\x00" * 8),
    "unicode-dtype": npy(hdr("'<U3'", "(1,)"), b"\x00" * 12),
    "datetime-dtype": npy(hdr("'<M8[s]'", "(1,)"), b"\x00" * 8),
    "complex-dtype": npy(hdr("'<c16'", "(1,)"), b"\x00" * 16),
    "fortran-order": npy(hdr("'<f4'", "(2, 2)", "True")),
    "call-in-header": npy(hdr("'<f4'", "__import__('os').getpid()")),
    "arabic-digit-shape": npy(hdr("'<f4'", "(٣,)")),
    "not-a-tuple": npy(hdr("'<f4'", "(4)")),
    "negative-dim": npy(hdr("'<f4'", "(-4,)")),
    "extra-key": npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}"),
    "version-2": b"\x93NUMPY\x02\x00" + b"\x00" * 70,
    "header-65535": b"\x93NUMPY\x01\x00\xff\xff" + b" " * 100,
    "truncated-header": npy(hdr("'<f4'", "(4,)"))[:30],
    "trailing-bytes": npy(hdr("'<f4'", "(4,)"), b"\x00" * 20),
    "truncated-data": npy(hdr("'<f4'", "(4,)"), b"\x00" * 10),
    "magic-only": b"\x93NUMPY",
}


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def jpeg_declaring(width: int, height: int) -> bytes:
    """A ~600-byte JPEG whose frame header claims width x height (a decompression bomb)."""
    body = bytearray(_encode(Image.new("RGB", (8, 8)), "JPEG"))
    sof = body.index(b"\xff\xc0")
    body[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(body)


def jpeg_scan_bomb(repeats: int = 100) -> bytes:
    """A small progressive JPEG whose scans are repeated: each scan costs a pass over the image."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="JPEG", progressive=True)
    body = buf.getvalue()
    sos = body.index(b"\xff\xda")
    return body[:sos] + body[sos:-2] * repeats + body[-2:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 4, height: int = 4, extra: bytes = b"", idat: bytes | None = None) -> bytes:
    """A PNG with ``extra`` chunks after IHDR; ``idat`` raw scanlines (zeros by default)."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    rows = idat if idat is not None else b"\x00" * (min(height, 64) * (1 + 3 * min(width, 64)))
    return (b"\x89PNG\r\n\x1a\n" + ihdr + extra + _chunk(b"IDAT", zlib.compress(rows))
            + _chunk(b"IEND", b""))


def inflating_chunk(kind: bytes, size: int = 4 << 20) -> bytes:
    """A zTXt/iCCP/iTXt chunk whose compressed text inflates to ``size`` bytes."""
    text = zlib.compress(b"\x00" * size, 9)
    data = b"k\x00\x01\x00\x00\x00" + text if kind == b"iTXt" else b"k\x00\x00" + text
    return _chunk(kind, data)


def max_size_png(side: int = 1024) -> bytes:
    """The largest image the orchestrator takes for a small model: side x side of zeros (~3 KB)."""
    return _encode(Image.new("RGB", (side, side)), "PNG")


def good_npy(shape: tuple[int, ...]) -> bytes:
    from edgesplit import wire

    return wire.encode(np.zeros(shape, np.float32))
