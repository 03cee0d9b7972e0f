"""Slice records for the allocator: every slice's size, transfer and compute time, in Redis streams.

The allocator fits link rates and server speeds from them (``services.allocator.measure``): stream
``{prefix}xfer:{executor name}``, fields ``bytes`` (sent plus received), ``transfer_s`` (round trip
minus the executor's wait and compute), ``compute_s``, ``flops`` (of the slice) and ``workers``.
Records are buffered and written every ``flush_s`` in one pipeline, off the slices' critical path;
each stream keeps about the newest ``maxlen`` records. Records are dropped while Redis is away.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import redis.asyncio as aioredis

from services.common.channels import xfer_stream

log = logging.getLogger("edgesplit.orchestrator")


class SliceLog:
    """Buffer of slice records, flushed to Redis streams by ``flush_forever``."""

    def __init__(self, client: aioredis.Redis, prefix: str, maxlen: int = 1000, buffer: int = 10_000) -> None:
        self.r = client
        self.prefix = prefix
        self.maxlen = maxlen
        self.pending: deque[tuple[str, dict[str, float]]] = deque(maxlen=buffer)

    def add(self, executor: str, nbytes: int, transfer_s: float, compute_s: float, flops: float,
            workers: int) -> None:
        self.pending.append((executor, {"bytes": float(nbytes), "transfer_s": transfer_s,
                                        "compute_s": compute_s, "flops": flops, "workers": float(workers)}))

    async def flush(self) -> int:
        """Write the buffered records; returns how many."""
        if not self.pending:
            return 0
        batch = list(self.pending)
        self.pending.clear()
        pipe = self.r.pipeline(transaction=False)
        for name, fields in batch:
            pipe.xadd(xfer_stream(self.prefix, name), fields, maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
        try:
            await pipe.execute()
        except (aioredis.RedisError, OSError) as e:
            log.warning("dropping %d slice records: %s", len(batch), e)
            return 0
        return len(batch)

    async def flush_forever(self, interval_s: float = 0.5) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.flush()
