"""The cloud's compute thread: requests in priority order, arrival order among equals.

The cloud computes one request at a time (``threads`` torch threads). With dynamic batching a request
may carry a batch of many images, so an urgent task's request waiting behind a few batches in arrival
order would wait for all of them: requests carry the priority of their most urgent task
(``?priority=``, 1 the highest; none: after every prioritised one) and the most urgent waiting one is
computed next. A request already computing is never interrupted.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import torch

LAST = 1 << 30  # the priority of a request that gives none
_STOP = -(1 << 62)  # sorts before every request


class PriorityCompute:
    """One thread computing submitted calls, the lowest ``priority`` first, FIFO among equals."""

    def __init__(self, threads: int) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Future[Any] | None]] = \
            queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = threads
        self._thread = threading.Thread(target=self._run, name="es-cloud", daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[[], Any]) -> Future[Any]:
        """Queue ``fn``; its future completes once the thread has run it."""
        fut: Future[Any] = Future()
        self._queue.put((priority, next(self._seq), fn, fut))
        return fut

    def _run(self) -> None:
        torch.set_num_threads(self._threads)  # a Python thread must set its own OpenMP team size
        while True:
            _, _, fn, fut = self._queue.get()
            if fn is None or fut is None:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as e:  # handed to the request that submitted it
                fut.set_exception(e)

    def shutdown(self) -> None:
        """Let the call computing now finish, cancel the waiting ones, stop the thread."""
        self._queue.put((_STOP, next(self._seq), None, None))
        self._thread.join()
        while True:
            try:
                _, _, _, fut = self._queue.get_nowait()
            except queue.Empty:
                return
            if fut is not None:
                fut.cancel()
