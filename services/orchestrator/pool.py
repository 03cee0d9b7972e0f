"""The executors as the orchestrator sees them: clients, health (down / up), load, the probe loop.

Each executor has a circuit breaker. A slice that fails (timeout, 5xx) counts one failure;
``breaker_failures`` failures within ``breaker_window_s`` open the circuit: the executor is marked
down and the pipeline re-plans without it (``ExecutorFailed``). A refused connection (nothing
listens: the process is dead) opens it at once. After ``breaker_open_s`` the circuit is half-open: the
probe loop asks the executor's ready endpoint, and one answer closes it (the executor is back).
An executor whose sub-zone queue is full answers 503 with ``Retry-After`` (``Overloaded``): that is
not a failure; the slice waits that long (at most ``overload_wait_s`` at a time) and is sent again,
until ``slice_timeout_s`` has passed, and only then counts as a failure. Listeners (the plan sources)
hear about every change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, Protocol

import numpy as np

from edgesplit.errors import EdgesplitError, Overloaded, Unavailable, Unreachable
from edgesplit.plan.cluster import Cluster
from edgesplit.split import Slice
from services.executor.client import SliceResult

log = logging.getLogger("edgesplit.orchestrator")


class SliceClient(Protocol):
    """What the pool needs of an executor client (``services.executor.client.ExecutorClient``)."""

    async def run_slice_timed(self, model: str, slice: Slice, x: np.ndarray, subzone: int,
                              task_id: str = "", priority: int | None = None) -> SliceResult: ...

    async def get_quotas(self, owner: str | None = None) -> dict[str, dict[int, int]]: ...

    async def put_quotas(self, quotas: dict[str, dict[int, int]],
                         owner: str | None = None) -> dict[str, dict[int, int]]: ...

    async def ready(self) -> bool: ...

    async def aclose(self) -> None: ...


class ExecutorFailed(Exception):
    """An executor did not compute its slice (down, timed out, or answered 5xx)."""

    def __init__(self, server: int, reason: str, sent: bool = True) -> None:
        super().__init__(f"executor {server} failed: {reason}")
        self.server = server
        self.reason = reason
        self.sent = sent  # False: marked down already, nothing was sent


class ExecutorPool:
    """One client per server of the cluster (index = server index of the plans)."""

    def __init__(self, cluster: Cluster, clients: list[SliceClient], slice_timeout_s: float,
                 breaker_failures: int = 3, breaker_window_s: float = 10.0, breaker_open_s: float = 2.0,
                 overload_wait_s: float = 1.0) -> None:
        if len(clients) != len(cluster.servers):
            raise ValueError(f"{len(clients)} clients for {len(cluster.servers)} servers")
        self.cluster = cluster
        self.clients = clients
        self.slice_timeout_s = slice_timeout_s
        self.breaker_failures, self.breaker_window_s = breaker_failures, breaker_window_s
        self.breaker_open_s, self.overload_wait_s = breaker_open_s, overload_wait_s
        self._recent: list[deque[float]] = [deque() for _ in clients]  # failure times (monotonic)
        self._opened: dict[int, float] = {}  # server -> when its circuit opened (monotonic)
        self.overloaded = 0  # 503 + Retry-After answers honoured
        self.down: set[int] = set()
        self.busy = [0] * len(clients)
        self.failures: dict[int, str] = {}
        self._listeners: list[Callable[[], None]] = []
        self._rr = 0

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever an executor goes down or comes back."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()

    @property
    def up(self) -> list[int]:
        return [m for m in range(len(self.clients)) if m not in self.down]

    def mark_down(self, server: int, reason: str) -> None:
        """Open the server's circuit now."""
        if server not in self.down:
            log.warning("executor %d (%s) marked down: %s", server, self.cluster.servers[server].url, reason)
            self.down.add(server)
            self.failures[server] = reason
            self._opened[server] = time.monotonic()
            self._notify()

    def record_failure(self, server: int, reason: str) -> None:
        """Count one failure; the ``breaker_failures``-th within ``breaker_window_s`` opens the circuit."""
        now = time.monotonic()
        recent = self._recent[server]
        recent.append(now)
        while recent and recent[0] < now - self.breaker_window_s:
            recent.popleft()
        if len(recent) >= self.breaker_failures:
            recent.clear()
            self.mark_down(server, f"{reason} ({self.breaker_failures} failures within "
                                   f"{self.breaker_window_s:g} s)")

    def least_loaded(self, avoid: Collection[int] = ()) -> int:
        """The up executor with the fewest slices in flight per thread (round-robin among ties), one
        not in ``avoid`` when there is one."""
        up = [m for m in self.up if m not in avoid] or self.up
        if not up:
            raise Unavailable("no executor is up")
        self._rr += 1
        return min(up, key=lambda m: (self.busy[m] / self.cluster.servers[m].threads,
                                      (m - self._rr) % len(self.clients)))

    async def run(self, server: int, model: str, sl: Slice, x: np.ndarray, subzone: int,
                  task_id: str, priority: int | None = None) -> tuple[SliceResult, float, float]:
        """Compute one slice on ``server``; returns (result, start, end), wall-clock seconds.

        Raises ExecutorFailed when it cannot (counting a failure of the server, module docstring); a
        domain error other than Unavailable (a 4xx: the request itself is wrong) propagates unchanged.
        """
        if server in self.down:
            raise ExecutorFailed(server, "marked down", sent=False)
        self.busy[server] += 1
        t0 = time.time()
        try:
            out = await self._send(server, model, sl, x, subzone, task_id, priority)
        except Unreachable as e:
            self.mark_down(server, f"unreachable: {e}")
            raise ExecutorFailed(server, str(e)) from e
        except (TimeoutError, Unavailable) as e:
            self.record_failure(server, f"{type(e).__name__}: {e}")
            raise ExecutorFailed(server, str(e) or type(e).__name__) from e
        except EdgesplitError as e:
            if e.status < 500:
                raise
            self.record_failure(server, f"HTTP {e.status}: {e}")
            raise ExecutorFailed(server, str(e)) from e
        finally:
            self.busy[server] -= 1
        return out, t0, time.time()

    async def _send(self, server: int, model: str, sl: Slice, x: np.ndarray, subzone: int,
                    task_id: str, priority: int | None = None) -> SliceResult:
        """The slice call, sent again after each ``Overloaded`` answer's Retry-After (capped at
        ``overload_wait_s``) until ``slice_timeout_s`` has passed since the first try."""
        give_up = time.monotonic() + self.slice_timeout_s
        while True:
            left = give_up - time.monotonic()
            try:
                return await asyncio.wait_for(
                    self.clients[server].run_slice_timed(model, sl, x, subzone, task_id, priority),
                    max(left, 0.001))
            except Overloaded as e:
                self.overloaded += 1
                wait = min(e.retry_after_s, self.overload_wait_s)
                if time.monotonic() + wait >= give_up:
                    raise
                await asyncio.sleep(wait)

    async def probe_once(self) -> list[int]:
        """Probe every down executor; bring back those that answer ready. Returns them."""
        back = []
        now = time.monotonic()
        for m in sorted(self.down):  # half-open once breaker_open_s has passed: one probe decides
            if now - self._opened.get(m, 0.0) >= self.breaker_open_s and await self.clients[m].ready():
                back.append(m)
        if back:
            for m in back:
                self.down.discard(m)
                self.failures.pop(m, None)
                self._opened.pop(m, None)
                self._recent[m].clear()
                log.warning("executor %d (%s) is back", m, self.cluster.servers[m].url)
            self._notify()
        return back

    async def probe_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.probe_once()
            except Exception:  # a probe must never stop the loop
                log.exception("probe failed")

    def describe(self) -> list[dict[str, Any]]:
        return [{"index": m, "name": s.name, "url": s.url, "threads": s.threads, "up": m not in self.down,
                 "busy": self.busy[m], "error": self.failures.get(m)}
                for m, s in enumerate(self.cluster.servers)]

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
