"""A small synchronous client of the orchestrator's public API (CLI, demo, benchmarks)::

    with OrchestratorClient("http://127.0.0.1:8080") as oc:
        tid = oc.submit(png_bytes, model="alexnet-paper", priority=1)
        info = oc.result(tid, wait_s=30)

Errors answer with the domain error the orchestrator named (``QueueFull``, ``ModelNotFound``...);
an orchestrator that cannot be reached is ``Unreachable`` (connection refused, no such host) or
``Unavailable`` (no answer in time, connection cut), both naming the URL (the CLI's one-line error).
"""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import Any

import httpx

from edgesplit.errors import Unavailable, Unreachable
from services.common.errors import error_from_response

TERMINAL = ("done", "failed", "expired", "rejected", "cancelled")


class OrchestratorClient:
    """Sync client; ``token`` is the public API token when the orchestrator has one."""

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.ConnectError as e:
            raise Unreachable(f"cannot reach the orchestrator at {self.base_url}: {e} (is it running? "
                              f"`edgesplit up` starts one)") from e
        except httpx.TimeoutException as e:
            raise Unavailable(f"the orchestrator at {self.base_url} did not answer in time ({e!r})") from e
        except httpx.TransportError as e:
            raise Unavailable(f"the orchestrator at {self.base_url} failed: {type(e).__name__}: {e}") from e

    def _check(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                payload = r.json()
            except json.JSONDecodeError:
                payload = {"error": r.text[:200]}
            raise error_from_response(r.status_code, payload, r.headers, str(r.url))
        return r.json()

    def _post_task(self, body: bytes, model: str, priority: int | None, timeout_s: float | None,
                   idempotency_key: str | None, extra: dict[str, str]) -> dict[str, Any]:
        params: dict[str, str] = {"model": model, **extra}
        if priority is not None:
            params["priority"] = str(priority)
        if timeout_s is not None:
            params["timeout"] = str(timeout_s)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer: dict[str, Any] = self._check(self._send("POST", "/v1/tasks", params=params, content=body,
                                                             headers=headers))
        return answer

    def submit(self, body: bytes, model: str, priority: int | None = None, timeout_s: float | None = None,
               idempotency_key: str | None = None) -> str:
        """Queue one task (PNG, JPEG or NPY bytes); returns its id."""
        return str(self._post_task(body, model, priority, timeout_s, idempotency_key, {})["id"])

    def run(self, body: bytes, model: str, priority: int | None = None, timeout_s: float | None = None,
            wait_s: float = 60.0, logits: bool = True, idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit one task and wait for it in the same request (``POST /v1/tasks?wait=``); the task as
        ``result`` gives it (long-polling on if it has no final status after the first 30 s)."""
        first = min(30.0, wait_s)
        answer = self._post_task(body, model, priority, timeout_s, idempotency_key,
                                 {"wait": str(first), "logits": str(logits).lower()})
        if answer["status"] in TERMINAL:
            return answer
        return self.result(str(answer["id"]), max(0.0, wait_s - first), logits)

    def get(self, task_id: str, wait_s: float = 0.0, logits: bool = True) -> dict[str, Any]:
        info: dict[str, Any] = self._check(self._send("GET", f"/v1/tasks/{task_id}",
                                                         params={"wait": wait_s, "logits": logits}))
        return info

    def cancel(self, task_id: str) -> str:
        """Cancel a queued or running task (``DELETE /v1/tasks/{id}``); returns ``cancelled``. Raises
        TaskNotFound, or Conflict when it had already ended."""
        return str(self._check(self._send("DELETE", f"/v1/tasks/{task_id}"))["status"])

    def result(self, task_id: str, wait_s: float = 60.0, logits: bool = True) -> dict[str, Any]:
        """The task once it ended (long-polls in steps of at most 30 s), or as it is after ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            info = self.get(task_id, min(30.0, max(0.0, deadline - time.monotonic())), logits)
            if info["status"] in TERMINAL or time.monotonic() >= deadline:
                return info

    def models(self) -> dict[str, Any]:
        out: dict[str, Any] = self._check(self._send("GET", "/v1/models"))
        return out

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = self._check(self._send("GET", "/v1/status"))
        return out

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> OrchestratorClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
