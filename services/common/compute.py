"""A compute thread: submitted calls run one at a time, the lowest priority first, FIFO among equals.

One class for the executor's sub-zone workers (priority not used: FIFO) and the cloud's compute
thread. The cloud computes one request at a time; with dynamic batching a request may carry a batch
of many images, so an urgent task's request waiting behind a few batches in arrival order would wait
for all of them: requests carry the priority of their most urgent task (``?priority=``, 1 the
highest; none: ``LAST``) and the most urgent waiting one is computed next. A call already running is
never interrupted.

Lanes: a service runs its bulk work (batches, lower priorities) on threads with a positive
``nice`` and its urgent work on threads of its own at the default, so that when both compute at once
the kernel gives the urgent thread (and the OpenMP team it creates, which inherits its nice) nearly
all of the cores: CFS weighs nice 10 at 110 against 1024 for nice 0. Raising one's own nice needs
no privilege. Where the platform has no per-thread nice the setting is ignored.

The nice alone still left the bulk threads about 10% of the cores beside the urgent lane, and the
kernel lets a waking thread wait for the running one's slice: a 2-thread urgent loop beside a
1-thread batch-8 loop took 26-30 ms at nice 10 or 19 against 15.7 ms alone. So bulk threads also
run under ``SCHED_IDLE`` (:class:`ThreadPolicy`, the service's ``bulk_idle``; Linux, no privilege
needed to lower one's own policy): they get a core only when no thread at the normal policy wants
it, and a waking urgent thread preempts them at once (15.8-17.3 ms in the same loop). Throughput is
unchanged, for the cores the urgent work leaves are all theirs; priority-1 p95 at 16 customers fell
from 200-220 to 180-190 ms, alternating runs, docs/BENCHMARKS.md run 10.

The urgent lane's thread runs at the service's ``urgent_nice`` (-10) where the process may raise its
priority (CAP_SYS_NICE), so that it also wins the cores from the threads at the default nice: the
event loops, the orchestrator, the load generator. Priority-1 p95 at 16 customers: 160, 200 ms at
-10 against 220, 230 at 0 (alternating runs, run 10).

Pauses: the nice alone left an urgent slice under load at 1.8-2x its idle time (the bulk threads
still ran, memory bandwidth and caches are shared, and a 2-core machine has no core to spare). So
a process's bulk threads also *wait* between two layers of their slice (``edgesplit.split.pause``)
while an urgent call computes on its lane (:class:`UrgentGate`), each wait at most ``hold_s`` (the
service's ``urgent_pause_s``), so that bulk work is never starved.

The thread sets its own torch intra-op thread count first: a thread not started by OpenMP gets the
process's initial OpenMP team size (all cores), not the one ``torch.set_num_threads`` gave the main
thread. Without it each executor worker's conv spread over every core and k workers oversubscribed
them (3x slower measured with 2 workers on 2 cores).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch

from edgesplit.split.pause import pause_with

if TYPE_CHECKING:
    from services.common.settings import ServiceSettings

LAST = 1 << 30  # the priority of a call that gives none
_STOP = -(1 << 62)  # sorts before every call: ``shutdown``
_DRAIN = LAST + 1  # sorts after every call: ``stop``
QUIET_S = 0.25  # bulk work ended this long ago: an urgent call goes to the bulk side (UrgentLane)
URGENT_ROWS = 8  # images in one urgent batch at most (UrgentBatches)
T = TypeVar("T")


@dataclass(frozen=True)
class ThreadPolicy:
    """How a lane's threads share the cores (module docstring, *Lanes*): their ``nice`` (-20 to 19)
    and, with ``idle``, the ``SCHED_IDLE`` policy."""

    nice: int = 0
    idle: bool = False

    @classmethod
    def bulk(cls, settings: ServiceSettings) -> ThreadPolicy:
        """A service's bulk lane: its ``bulk_nice`` and ``bulk_idle``."""
        return cls(settings.bulk_nice, settings.bulk_idle)

    @classmethod
    def urgent(cls, settings: ServiceSettings) -> ThreadPolicy:
        """A service's urgent lane: its ``urgent_nice``."""
        return cls(settings.urgent_nice)

    def apply(self) -> None:
        """Put the calling thread under this policy. A platform without it, or a process that may not
        raise its priority (a negative nice needs CAP_SYS_NICE or RLIMIT_NICE), keeps the default."""
        tid = threading.get_native_id()  # Linux: a thread id is a "process" for both calls
        if self.nice != 0:
            with contextlib.suppress(OSError, AttributeError):
                os.setpriority(os.PRIO_PROCESS, tid, self.nice)
        if self.idle:
            with contextlib.suppress(OSError, AttributeError):
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))


class UrgentGate:
    """Closed while urgent calls compute in this process; bulk threads wait at their pause points
    while it is closed, at most ``hold_s`` each time (module docstring, *Pauses*; 0: never)."""

    def __init__(self, hold_s: float = 0.25) -> None:
        self.hold_s = hold_s
        self._urgent = 0
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    def run(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` with the gate closed (an urgent call)."""
        with self._lock:
            self._urgent += 1
            self._open.clear()
        try:
            return fn()
        finally:
            with self._lock:
                self._urgent -= 1
                if not self._urgent:
                    self._open.set()

    def wait(self) -> None:
        """A bulk thread's pause point: return once no urgent call computes, or after ``hold_s``."""
        if self.hold_s > 0:
            self._open.wait(self.hold_s)


class ComputeThread:
    """One daemon thread running submitted calls (module docstring) with ``threads`` torch threads;
    it runs under ``policy`` (its nice and scheduling policy) and, with a ``gate`` (a bulk thread),
    waits at its pause points while the gate is closed."""

    def __init__(self, threads: int = 1, name: str = "es-compute", policy: ThreadPolicy | None = None,
                 gate: UrgentGate | None = None) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, Future[Any] | None]] = \
            queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = threads
        self.policy = policy
        self.gate = gate
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any], priority: int = LAST) -> Future[Any]:
        """Queue ``fn``; its future completes once the thread has run it."""
        fut: Future[Any] = Future()
        self._queue.put((priority, next(self._seq), fn, fut))
        return fut

    def _run(self) -> None:
        if self.policy is not None:  # this thread only, and the OpenMP team it creates
            self.policy.apply()
        torch.set_num_threads(self._threads)
        if self.gate is not None:
            pause_with(self.gate.wait)
        while True:
            _, _, fn, fut = self._queue.get()
            if fn is None or fut is None:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            self._busy = True
            try:
                fut.set_result(fn())
            except BaseException as e:  # handed to whoever submitted it
                fut.set_exception(e)
            finally:
                self._busy = False

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting (a moment's view: another thread may submit next)."""
        return not self._busy and self._queue.empty()

    def stop(self) -> None:
        """Let the thread end once the calls queued so far have run; do not wait."""
        self._queue.put((_DRAIN, next(self._seq), None, None))

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def shutdown(self) -> None:
        """Let the call running now finish, cancel the waiting ones, stop the thread."""
        self._queue.put((_STOP, next(self._seq), None, None))
        self._thread.join()
        while True:
            try:
                _, _, _, fut = self._queue.get_nowait()
            except queue.Empty:
                return
            if fut is not None:
                fut.cancel()


class UrgentLane:
    """A service's urgent lane (module docstring, *Lanes*): a :class:`ComputeThread` under ``policy``
    (the service's ``urgent_nice``; none: the default nice) with ``threads`` torch threads, used only
    while there is bulk work to run beside.

    An urgent call takes the lane while the bulk side is busy, or its work ended less than
    ``quiet_s`` ago (:meth:`wanted`); otherwise the bulk side takes it at once, and the lane's thread,
    if idle, ends. Why both: once a second OpenMP team exists in a process, libgomp cuts every team's
    spin to 100 rounds (more of its threads than cores), and alexnet-paper's 2-thread edge part then
    took 33-37 ms at idle instead of 23-25; ending the thread ends its team, so the spin is whole
    again once the load has gone. But not whenever the bulk side is merely free: under load it is
    free for moments between batches, and an urgent call on the niced bulk threads then lost the
    cores (priority-1 p95 at 16 customers over 1: 2.9-3.2 against 2.4-2.6; one torch thread on the
    lane, which keeps the spin, measured 2.9-3.0; docs/BENCHMARKS.md run 7).
    """

    def __init__(self, threads: int, name: str, quiet_s: float = QUIET_S,
                 gate: UrgentGate | None = None, policy: ThreadPolicy | None = None) -> None:
        self.threads, self.name, self.quiet_s, self.policy = threads, name, quiet_s, policy
        self.gate = gate  # closed while the lane computes: the bulk threads wait at their pause points
        self.thread: ComputeThread | None = None  # started by ``submit``, ended by ``wanted``
        self._bulk_at = -float("inf")  # time.monotonic() when bulk work last ended

    def bulk_done(self) -> None:
        """Record that a bulk call ended now."""
        self._bulk_at = time.monotonic()

    def bulk_recent(self) -> bool:
        """Whether bulk work ended less than ``quiet_s`` ago."""
        return time.monotonic() - self._bulk_at < self.quiet_s

    def wanted(self, bulk_busy: bool) -> bool:
        """Whether an urgent call goes to the lane now (class docstring); when not, the lane's idle
        thread ends."""
        if bulk_busy or self.bulk_recent():
            return True
        if self.thread is not None and self.thread.idle:
            self.thread.stop()
            self.thread = None
        return False

    def submit(self, fn: Callable[[], Any], priority: int = LAST) -> Future[Any]:
        """``fn`` on the lane's thread, started if it is not running."""
        if self.thread is None:
            self.thread = ComputeThread(self.threads, self.name, self.policy)
        gate = self.gate
        return self.thread.submit(fn if gate is None else lambda: gate.run(fn), priority)

    def stop(self) -> ComputeThread | None:
        """End the lane's thread once its calls have run; the thread, to join, or None."""
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.stop()
        return thread

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.shutdown()
            self.thread = None


@dataclass
class Waiting(Generic[T]):
    """An urgent request waiting for its lane: its group ``key``, its ``rows`` (images), what the
    service needs to compute it (``item``), when it ``arrived`` (``time.perf_counter``) and the future
    its result goes to."""

    key: Hashable
    rows: int
    item: T
    arrived: float
    future: asyncio.Future[Any]


class UrgentBatches(Generic[T]):
    """Urgent requests waiting for one urgent lane, computed a group at a time: when the lane frees,
    every waiting request of the head's ``key`` (the same slice, or the same model and first layer),
    up to ``max_rows`` images, goes as one batch. ``compute(group)`` runs the batch and returns each
    member's result, in the group's order (:meth:`rows` cuts a batched tensor back into them); a
    member cancelled by its caller meanwhile gets nothing.

    Why: priority-1 tasks come in bursts (a batch's end frees several closed-loop customers at once,
    and 10% of them draw priority 1). One at a time, the last of five waited for four; together the
    rows share one pass over the weights (alexnet-paper's edge part: batch 2 costs 1.7x batch 1; its
    FC layers, memory-bound, about 1.1x)."""

    def __init__(self, compute: Callable[[list[Waiting[T]]], Awaitable[list[Any]]],
                 max_rows: int = URGENT_ROWS) -> None:
        self._compute, self.max_rows = compute, max_rows
        self._waiting: list[Waiting[T]] = []  # in arrival order
        self._drain: asyncio.Task[None] | None = None

    async def run(self, key: Hashable, rows: int, item: T) -> Any:
        """Wait for the lane with the others of ``key``; the result ``compute`` gave this request.
        A request cancelled while it waits is left out of its batch."""
        waiting = Waiting(key, rows, item, time.perf_counter(), asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_all())
        return await waiting.future

    async def _drain_all(self) -> None:
        while self._waiting:
            head = self._waiting[0]
            group: list[Waiting[T]] = []
            rest: list[Waiting[T]] = []
            rows = 0
            for w in self._waiting:
                if w.future.done():  # cancelled while it waited
                    continue
                if w.key == head.key and (not group or rows + w.rows <= self.max_rows):
                    group.append(w)
                    rows += w.rows
                else:
                    rest.append(w)
            self._waiting = rest
            if not group:
                continue
            try:
                results = await self._compute(group)
            except asyncio.CancelledError:  # the service stops
                for w in group:
                    w.future.cancel()
                raise
            except Exception as e:  # each member gets it
                for w in group:
                    if not w.future.done():
                        w.future.set_exception(e)
                continue
            for w, result in zip(group, results, strict=True):
                if not w.future.done():
                    w.future.set_result(result)

    @staticmethod
    def rows(batch: Any, group: list[Waiting[T]]) -> list[Any]:
        """``batch`` (a tensor or array of the group's rows, in order) cut into each member's rows."""
        out, at = [], 0
        for w in group:
            out.append(batch[at:at + w.rows])
            at += w.rows
        return out
