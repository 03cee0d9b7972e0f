"""Slices whose caller went away are not computed.

The orchestrator cancels the slice calls of a task it no longer holds (lease lost, cancelled, ended
elsewhere) and of a call it stopped waiting for (timeout); its HTTP client then closes the connection.
:func:`unless_gone` runs the slice while watching the request: when the client disconnects first, the
slice is cancelled. A slice still waiting for its sub-zone leaves the queue without being computed;
one already computing finishes on its worker threads (they cannot be interrupted) and the answer is
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientGone(Exception):
    """The caller disconnected before the slice was done."""


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the request body was already read in full)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """``await work``, unless the client disconnects first: then ``work`` is cancelled, ClientGone."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done() and not watch.done():  # we were cancelled ourselves
            task.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone
