"""Uploads decoded off the event loop, a bounded number at a time (docs/API.md, "Image decoding").

An image decode is CPU work in Pillow (which releases the GIL while it decodes and resizes). Run on
the event loop, a flood of large images held every other request, liveness included, for seconds.
Here images decode on a pool of ``workers`` threads; at most ``queue`` more wait for one, and a request
that finds the queue full, or waits longer than ``wait_s``, is refused with 429 and ``Retry-After``
instead of piling up. What one decode may cost is bounded before it starts: the declared size is
checked against :class:`~services.orchestrator.images.ImageLimits` from the image's header.

NPY bodies are not queued: their header is checked against the model before the data is read, and
the cast of an input-sized array costs microseconds.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgesplit.errors import InvalidInput, QueueFull
from edgesplit.models.spec import ModelSpec
from services.orchestrator import images


class Decoder:
    """Turns uploads into model inputs (``images.to_input``) on a bounded pool of threads."""

    def __init__(self, limits: images.ImageLimits, workers: int = 2, queue: int = 64,
                 wait_s: float = 5.0) -> None:
        self.limits = limits
        self.workers = workers
        self.queue = queue
        self.wait_s = wait_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="es-decode")
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0

    def _busy(self, why: str) -> QueueFull:
        return QueueFull(f"{why}: {self.workers} image decodes run at once and {self.queue} may wait; "
                         "retry later", retry_after_s=1.0)

    async def to_input(self, body: bytes, spec: ModelSpec) -> np.ndarray:
        """The model input (1, C, H, W) float32 of a PNG, JPEG or NPY body; InvalidInput, 415 or 429."""
        if not body:
            raise InvalidInput("empty body: send a PNG/JPEG image or an NPY array")
        if images.sniff(body) == "npy":
            return images.decode_npy(body, spec)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        if self._waiting >= self.workers + self.queue:
            raise self._busy("too many images are being decoded")
        self._waiting += 1
        try:
            try:
                await asyncio.wait_for(self._slots.acquire(), self.wait_s)
            except TimeoutError as e:
                raise self._busy(f"no image decoder was free within {self.wait_s} s") from e
            try:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, images.decode_image, body, spec, self.limits)
            finally:
                self._slots.release()
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
