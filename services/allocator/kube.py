"""Kubernetes mode: executor pods discovered by label, watched, and resized in place.

The allocator lists the pods of its namespace that match ``executor_selector`` (RBAC: pods get, list,
watch), keeps that set current from a watch running on a thread of its own, and, when the threads an
executor needs (its zone total) change, sets the CPU of its container in place through the
``pods/resize`` subresource (RBAC: pods/resize patch)::

    PATCH /api/v1/namespaces/{ns}/pods/{pod}/resize
    Content-Type: application/strategic-merge-patch+json
    {"spec": {"containers": [{"name": "executor",
        "resources": {"limits": {"cpu": "3"}, "requests": {"cpu": "3"}}}]}}

A cluster that refuses the resize (403: RBAC or the feature off; 422: the pod's QoS class or resize
policy forbids it) leaves the pod as it is: the allocator then changes only the executor's quotas,
and does not ask again for that pod. The kubernetes client is synchronous: call these methods from
a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.utils import parse_quantity

log = logging.getLogger("edgesplit.allocator")

RESIZE_CONTENT_TYPE = "application/strategic-merge-patch+json"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REFUSALS = (403, 422)
ResizeStatus = Literal["resized", "refused", "failed", "unknown-pod"]


@dataclass(frozen=True)
class ExecutorPod:
    """One executor pod: its name, uid, address, whether it is ready, its container's CPU limit (cores)
    now, and ``budget``: the limit it had when first seen, before any resize (its zone budget)."""

    name: str
    uid: str
    ip: str | None
    ready: bool
    cpu_limit: float | None
    port: int
    budget: float | None = None

    @property
    def url(self) -> str | None:
        return f"http://{self.ip}:{self.port}" if self.ip else None


@dataclass(frozen=True)
class ResizeResult:
    """What a resize did: ``resized``, ``refused`` (403/422: quotas only), ``failed`` or ``unknown-pod``."""

    pod: str
    cpu: int
    status: ResizeStatus
    http_status: int | None = None
    reason: str = ""


def parse_cpu(quantity: str | int | float | None) -> float | None:
    """A Kubernetes CPU quantity in cores (``kubernetes.utils.parse_quantity``: ``"500m"`` -> 0.5,
    ``"2"`` -> 2.0, ``"1.5"``, ``"2k"``...); None when absent or not a quantity."""
    if quantity is None:
        return None
    try:
        return float(parse_quantity(quantity.strip() if isinstance(quantity, str) else quantity))
    except (ValueError, TypeError, ArithmeticError):
        return None


def resize_body(container: str, cpu: int) -> dict[str, Any]:
    """The strategic-merge patch of ``pods/resize`` setting the container's CPU limit and request."""
    value = str(int(cpu))
    return {"spec": {"containers": [{"name": container,
                                     "resources": {"limits": {"cpu": value}, "requests": {"cpu": value}}}]}}


def pod_from_dict(raw: Mapping[str, Any], container: str, port: int) -> ExecutorPod:
    """An ``ExecutorPod`` from a pod object as the API server returns it (JSON). Ready = phase Running
    and condition Ready; the port is the executor container's port named ``http``, else ``port``."""
    meta, spec, status = raw.get("metadata", {}), raw.get("spec", {}), raw.get("status", {}) or {}
    conditions = status.get("conditions") or []
    ready = status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    if meta.get("deletionTimestamp"):
        ready = False
    cpu = None
    for c in spec.get("containers") or []:
        if c.get("name") == container:
            cpu = parse_cpu(((c.get("resources") or {}).get("limits") or {}).get("cpu"))
            port = _http_port(c.get("ports") or [], port)
    return ExecutorPod(str(meta.get("name", "")), str(meta.get("uid", "")), status.get("podIP"), ready, cpu,
                       port)


def _http_port(ports: list[Mapping[str, Any]], default: int) -> int:
    """The container port named ``http`` (else the only one declared, else ``default``)."""
    named = [p for p in ports if p.get("name") == "http"]
    chosen = named or (ports if len(ports) == 1 else [])
    return int(chosen[0].get("containerPort", default)) if chosen else default


def in_cluster_api() -> client.CoreV1Api:
    """A CoreV1Api from the pod's service account (raises ConfigException outside a cluster)."""
    config.load_incluster_config()
    return client.CoreV1Api()


def own_namespace(default: str = "default") -> str:
    """The namespace this pod runs in (the service account's), else ``default``."""
    try:
        return NAMESPACE_FILE.read_text().strip() or default
    except OSError:
        return default


class KubeExecutors:
    """The executor pods of one namespace and label selector (see the module docstring)."""

    def __init__(self, api: client.CoreV1Api, namespace: str, selector: str, container: str = "executor",
                 port: int = 8101, watch_timeout_s: int = 60) -> None:
        self.api = api
        self.namespace = namespace
        self.selector = selector
        self.container = container
        self.port = port
        self.watch_timeout_s = watch_timeout_s
        self._pods: dict[str, ExecutorPod] = {}
        self._lock = threading.Lock()
        self._refused: dict[str, str] = {}  # pod uid -> why the cluster refused to resize it
        self._budgets: dict[str, float | None] = {}  # pod uid -> CPU limit when first seen
        self.stopping = threading.Event()

    def pods(self) -> list[ExecutorPod]:
        """The executor pods known now, by name."""
        with self._lock:
            return sorted(self._pods.values(), key=lambda p: p.name)

    def list(self) -> str:
        """List the pods matching the selector (replacing what was known); returns the resourceVersion."""
        resp = self.api.list_namespaced_pod(self.namespace, label_selector=self.selector,
                                            _preload_content=False)
        raw = json.loads(resp.data)  # type: ignore[attr-defined]  # urllib3 response (no preload)
        pods = [self._known(pod_from_dict(item, self.container, self.port)) for item in raw.get("items", [])]
        with self._lock:
            self._pods = {p.name: p for p in pods}
        return str((raw.get("metadata") or {}).get("resourceVersion", ""))

    def apply_event(self, kind: str, raw: Mapping[str, Any]) -> bool:
        """Apply one watch event (ADDED, MODIFIED, DELETED); True when the set of pods changed."""
        pod = self._known(pod_from_dict(raw, self.container, self.port))
        with self._lock:
            before = self._pods.get(pod.name)
            if kind == "DELETED":
                self._pods.pop(pod.name, None)
                return before is not None
            if kind in ("ADDED", "MODIFIED"):
                self._pods[pod.name] = pod
                return before != pod
        return False

    def _known(self, pod: ExecutorPod) -> ExecutorPod:
        """The pod with its budget: the CPU limit of its first sighting (our resizes do not change it)."""
        with self._lock:
            budget = self._budgets.setdefault(pod.uid, pod.cpu_limit)
        return replace(pod, budget=budget)

    def watch_once(self, version: str, on_change: Callable[[], None]) -> None:
        """Watch from ``version`` until the server ends the stream or ``stopping`` is set."""
        w = watch.Watch()
        kwargs: dict[str, Any] = {"label_selector": self.selector, "timeout_seconds": self.watch_timeout_s}
        if version:
            kwargs["resource_version"] = version
        for event in w.stream(self.api.list_namespaced_pod, self.namespace, **kwargs):
            if self.stopping.is_set():
                w.stop()
                break
            if self.apply_event(event["type"], event["raw_object"]):
                on_change()

    def watch_forever(self, on_change: Callable[[], None], min_cycle_s: float = 0.5) -> None:
        """List, then watch, again and again until ``stopping`` is set (run it on a thread)."""
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                before = self.pods()
                version = self.list()
                if self.pods() != before:
                    on_change()
                self.watch_once(version, on_change)
            except Exception as e:  # an API server restart or a 410 Gone: list again
                log.warning("watching executor pods failed (%s: %s); listing again", type(e).__name__, e)
            self.stopping.wait(max(0.0, min_cycle_s - (time.monotonic() - started)))

    def refuses(self, pod: ExecutorPod) -> bool:
        """True once the cluster refused to resize this pod (403/422): it is not asked again."""
        return pod.uid in self._refused

    def resize(self, pod_name: str, cpu: int) -> ResizeResult:
        """Set the executor container's CPU limit and request to ``cpu`` cores in place (pods/resize)."""
        with self._lock:
            pod = self._pods.get(pod_name)
        if pod is None:
            return ResizeResult(pod_name, cpu, "unknown-pod", None, "no such executor pod")
        if pod.uid in self._refused:
            return ResizeResult(pod_name, cpu, "refused", None, self._refused[pod.uid])
        try:
            self.api.patch_namespaced_pod_resize(pod_name, self.namespace, resize_body(self.container, cpu),
                                                 _content_type=RESIZE_CONTENT_TYPE, _preload_content=False)
        except ApiException as e:
            reason = f"HTTP {e.status}: {e.reason}"
            if e.status in REFUSALS:
                self._refused[pod.uid] = reason
                log.warning("pod %s refused an in-place resize (%s): changing quotas only", pod_name, reason)
                return ResizeResult(pod_name, cpu, "refused", e.status, reason)
            log.warning("resizing pod %s failed: %s", pod_name, reason)
            return ResizeResult(pod_name, cpu, "failed", e.status, reason)
        except Exception as e:  # connection errors: the next decision tries again
            log.warning("resizing pod %s failed: %s: %s", pod_name, type(e).__name__, e)
            return ResizeResult(pod_name, cpu, "failed", None, f"{type(e).__name__}: {e}")
        with self._lock:
            if pod_name in self._pods:
                self._pods[pod_name] = replace(pod, cpu_limit=float(cpu))
        return ResizeResult(pod_name, cpu, "resized", 200)
