"""``edgesplit up`` as a user runs it: an executor killed with kill -9 while 30 tasks are accepted is
restarted, every task ends done with one result, and SIGTERM stops the whole stack cleanly."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from edgesplit import wire
from edgesplit.models import get_spec
from tooling.proc import REPO, free_port

pytestmark = [pytest.mark.redis, pytest.mark.services, pytest.mark.slow]
CLI = [sys.executable, "-c", "from tooling.cli import main; main()"]
MODEL = "alexnet-paper"
TASKS = 30


def _listener(port: int) -> int | None:
    """The pid listening on ``port``, or None when nothing listens (a service restarting)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True).stdout
    match = re.search(r"pid=(\d+)", out)
    return int(match.group(1)) if match else None


def _banner(up: subprocess.Popen[str]) -> dict[str, int]:
    """The port of each service, from the lines ``edgesplit up`` prints once it is ready."""
    ports = {}
    assert up.stdout is not None
    for line in up.stdout:
        if m := re.match(r"\s+(\S+)\s+http://127\.0\.0\.1:(\d+)", line):
            ports[m.group(1)] = int(m.group(2))
        if "Press Ctrl-C" in line:
            return ports
    raise AssertionError("edgesplit up ended before it was ready")


def test_up_restarts_a_killed_executor_and_loses_no_task(tmp_path: Path) -> None:
    port = free_port()
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing there: `up` starts its own durable Redis
    up = subprocess.Popen([*CLI, "up", "--executors", "2", "--models", MODEL, "--port", str(port),
                           "--redis-url", redis_url, "--state-dir", str(tmp_path / "redis"),
                           "--log-dir", str(tmp_path / "logs"), "--prefix", "up-test:"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ports = _banner(up)
        spec = get_spec(MODEL)
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            route = c.get("/v1/models").json()["models"][MODEL]["route"]
            victim = sorted({m for step in route["steps"] for m in step["servers"]})[0]
            ids = []
            for _ in range(TASKS):
                x = rng.standard_normal((1, *spec.input)).astype(np.float32)
                r = c.post("/v1/tasks", params={"model": MODEL, "timeout": 300}, content=wire.encode(x))
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            while sum(c.get(f"/v1/tasks/{i}", params={"logits": False}).json()["status"] == "done"
                      for i in ids) < 3:
                time.sleep(0.02)
            in_flight = sum(c.get(f"/v1/tasks/{i}", params={"logits": False}).json()["status"]
                            in ("queued", "running") for i in ids)
            _pid = _listener(ports[f"executor-{victim}"])
            assert _pid is not None
            subprocess.run(["kill", "-9", str(_pid)], check=True)
            infos = [c.get(f"/v1/tasks/{i}", params={"wait": 60}).json() for i in ids]
            time.sleep(2.0)
            again = [c.get(f"/v1/tasks/{i}").json() for i in ids]
            # restarted: a new process listens on its port and the orchestrator sees it up (with
            # batching the tasks may all be done before the orchestrator has noticed the kill)
            deadline = time.monotonic() + 120
            while _listener(ports[f"executor-{victim}"]) in (None, _pid) or not all(
                    e["up"] for e in c.get("/v1/status").json()["executors"]):
                assert time.monotonic() < deadline, "the killed executor was not restarted"
                time.sleep(0.5)
        print(f"\n[edgesplit up, kill -9 executor-{victim}] accepted {TASKS}, in flight at the fault "
              f"{in_flight}, done {sum(i['status'] == 'done' for i in infos)}")
        assert [i["status"] for i in infos] == ["done"] * TASKS, [i.get("error") for i in infos]
        assert [(i["finished"], i["logits"]) for i in infos] == [(i["finished"], i["logits"]) for i in again]
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(120)
    assert code == 0
    stderr = up.stderr.read() if up.stderr else ""
    assert f"executor-{victim} exited and was restarted" in stderr
