"""A fake Kubernetes API server for the allocator's tests: a real HTTP server on a loopback port.

No Kubernetes API server can run on these machines, so the allocator's Kubernetes calls are tested
against this small ``http.server`` app, which answers what the allocator uses of the real one:
``GET /api/v1/namespaces/{ns}/pods`` (list, with ``labelSelector``; ``watch=true`` streams JSON-line
events until ``timeoutSeconds`` or the server stops) and ``PATCH .../pods/{name}/resize`` (recorded
with its content type and body, answered 200 with the updated pod or with a configured error).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client


def make_pod(name: str, ip: str | None = "10.0.0.1", labels: dict[str, str] | None = None, cpu: str = "4",
             ready: bool = True, port: int = 8101, container: str = "executor") -> dict[str, Any]:
    """A pod object as the API server returns it."""
    labels = {"app.kubernetes.io/component": "executor"} if labels is None else labels
    status: dict[str, Any] = {"phase": "Running" if ready else "Pending",
                              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip is not None:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "edge", "uid": f"uid-{name}", "labels": labels,
                         "resourceVersion": "1"},
            "spec": {"containers": [{"name": container, "image": "edgesplit:test",
                                     "ports": [{"name": "http", "containerPort": port}],
                                     "resources": {"limits": {"cpu": cpu}, "requests": {"cpu": cpu}}}]},
            "status": status}


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        if labels.get(key) != value.lstrip("="):
            return False
    return True


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


@dataclass
class FakeKube:
    """State of the fake API server; tests change it and read what it recorded."""

    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    resize_status: int = 200
    patches: list[dict[str, Any]] = field(default_factory=list)
    lists: list[dict[str, list[str]]] = field(default_factory=list)
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    version: int = 1
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, pod: dict[str, Any], event: bool = True) -> None:
        with self.lock:
            self.version += 1
            pod["metadata"]["resourceVersion"] = str(self.version)
            kind = "MODIFIED" if pod["metadata"]["name"] in self.pods else "ADDED"
            self.pods[pod["metadata"]["name"]] = pod
        if event:
            self.events.put({"type": kind, "object": pod})

    def delete(self, name: str) -> None:
        with self.lock:
            self.version += 1
            pod = self.pods.pop(name)
        self.events.put({"type": "DELETED", "object": pod})

    def api(self, url: str) -> client.CoreV1Api:
        conf = client.Configuration()
        conf.host = url
        return client.CoreV1Api(client.ApiClient(conf))


def _handler(state: FakeKube) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if parts[:3] != ["api", "v1", "namespaces"] or parts[4:] != ["pods"]:
                self._json(404, _status(404, "NotFound", f"no route {url.path}"))
                return
            query = parse_qs(url.query)
            state.lists.append(query)
            selector = query.get("labelSelector", [""])[0]
            if query.get("watch", ["false"])[0] in ("true", "1", "True"):
                self._watch(selector, float(query.get("timeoutSeconds", ["5"])[0]))
                return
            with state.lock:
                items = [p for p in state.pods.values() if _matches(p["metadata"]["labels"], selector)]
                version = str(state.version)
            self._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": version},
                             "items": items})

        def _watch(self, selector: str, timeout_s: float) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            end = time.monotonic() + min(timeout_s, 2.0)
            while time.monotonic() < end and not state.stopping.is_set():
                try:
                    event = state.events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if _matches(event["object"]["metadata"]["labels"], selector):
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                    self.wfile.flush()

        def do_PATCH(self) -> None:
            parts = urlparse(self.path).path.strip("/").split("/")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            state.patches.append({"path": urlparse(self.path).path,
                                  "content_type": self.headers.get("Content-Type"), "body": body})
            name = parts[5] if len(parts) > 5 else ""
            if state.resize_status == 403:
                self._json(403, _status(403, "Forbidden", f'pods "{name}" is forbidden: cannot patch '
                                        "resource pods/resize"))
            elif state.resize_status == 422:
                self._json(422, _status(422, "Invalid", f'Pod "{name}" is invalid: spec: Forbidden: pod '
                                        "updates may not change fields other than resources"))
            elif state.resize_status != 200:
                self._json(state.resize_status, _status(state.resize_status, "InternalError", "boom"))
            elif name not in state.pods:
                self._json(404, _status(404, "NotFound", f'pods "{name}" not found'))
            else:
                pod = state.pods[name]
                pod["spec"]["containers"][0]["resources"] = body["spec"]["containers"][0]["resources"]
                self._json(200, pod)

    return Handler


@contextmanager
def fake_kube_server() -> Iterator[tuple[FakeKube, str]]:
    """Run the fake API server on a free loopback port; yields its state and base url."""
    state = FakeKube()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        state.stopping.set()
        server.shutdown()
        server.server_close()
