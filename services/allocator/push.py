"""Pushing a decision to the executors: quotas in a safe order, pod CPU resized around them.

``PUT /v1/quotas/allocator`` replaces the allocator's namespace of an executor's quotas
(``services.common.channels.QUOTA_ALLOCATOR``; an orchestrator's namespace, for the models it plans
itself, is never touched), and the executor refuses quotas in force above its capacity (409), so each
executor's new set must fit beside the others', which the plans guarantee when the allocator plans
every model. Across
executors the calls go to those whose total shrinks first, then to those whose total grows: threads
are freed before they are used elsewhere (on one node, or one CPU budget). In Kubernetes mode a
growing executor's pod gets its CPU before its quotas grow, a shrinking one loses it after they
shrink (``kube.KubeExecutors.resize``; a refusing cluster leaves quota-only changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from edgesplit.errors import EdgesplitError
from services.allocator.executors import ExecutorRef, Quotas, total, update_order
from services.allocator.kube import KubeExecutors
from services.allocator.metrics import AllocatorMetrics
from services.common.channels import QUOTA_ALLOCATOR
from services.common.http import HttpPool
from services.executor.client import ExecutorClient

log = logging.getLogger("edgesplit.allocator")


class Pusher:
    """Sends quotas (one pooled HTTP client) and resizes pods; counts both in the metrics."""

    def __init__(self, http: HttpPool, token: str | None, timeout_s: float,
                 metrics: AllocatorMetrics, kube: KubeExecutors | None = None) -> None:
        self.http = http
        self.token = token
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.kube = kube
        self._clients: dict[str, ExecutorClient] = {}

    def client(self, ref: ExecutorRef) -> ExecutorClient | None:
        if ref.url is None:
            return None
        key = f"{ref.name} {ref.url}"
        if key not in self._clients:
            self._clients[key] = ExecutorClient(ref.url, self.token, self.timeout_s, http=self.http)
        return self._clients[key]

    async def push(self, refs: list[ExecutorRef], current: Mapping[str, Quotas],
                   desired: Mapping[str, Quotas], up: Callable[[ExecutorRef], bool],
                   on_put: Callable[[str, Quotas], None]) -> list[dict[str, Any]]:
        """Send the quotas that changed to the executors up, shrinking totals first; resize pods around
        them. ``on_put(name, quotas)`` after each accepted ``PUT``. Returns the resizes made."""
        by_name = {r.name: r for r in refs}
        changed = set(update_order(current, desired))
        resizes: list[dict[str, Any]] = []
        for name in sorted(desired, key=lambda n: (total(desired[n]) - total(current.get(n, {})), n)):
            ref = by_name.get(name)
            if ref is None or not up(ref):
                continue
            grow = total(desired[name]) > total(current.get(name, {}))
            if grow:
                resizes += await self.resize(ref, desired[name])
            if name in changed and await self.put(ref, desired[name]):
                on_put(name, desired[name])
            if not grow:
                resizes += await self.resize(ref, desired[name])
        return resizes

    async def put(self, ref: ExecutorRef, quotas: Quotas) -> bool:
        """``PUT /v1/quotas/allocator`` on one executor; False (logged, counted) when refused or away."""
        client = self.client(ref)
        if client is None:
            return False
        try:
            await client.put_quotas(quotas, QUOTA_ALLOCATOR)
        except EdgesplitError as e:
            log.warning("cannot set the quotas of %s: %s", ref.name, e)
            self.metrics.quota_puts.labels(ref.name, type(e).__name__).inc()
            return False
        self.metrics.quota_puts.labels(ref.name, "ok").inc()
        return True

    async def resize(self, ref: ExecutorRef, quotas: Quotas) -> list[dict[str, Any]]:
        """Kubernetes mode: the pod's CPU = its zone total (at least 1), when that differs."""
        if self.kube is None or ref.pod is None or self.kube.refuses(ref.pod):
            return []
        cpu = max(1, total(quotas))
        if ref.pod.cpu_limit is not None and abs(ref.pod.cpu_limit - cpu) < 1e-9:
            return []
        result = await asyncio.to_thread(self.kube.resize, ref.pod.name, cpu)
        self.metrics.resizes.labels(result.status).inc()
        return [{"pod": result.pod, "cpu": result.cpu, "status": result.status,
                 "http_status": result.http_status, "reason": result.reason}]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
