"""No accepted task is lost, and none gives two results, under the four faults of issue 14.

One stack (real processes) on a private, durable redis-server (its own port, its append-only file in a
temporary folder, ``appendfsync everysec``: as docs/ARCHITECTURE.md, Guarantees, tells a deployment to
run it), supervised as ``edgesplit up`` supervises it. For each fault, 40 tasks are accepted (202),
the fault strikes once a few are done, and then:

* every accepted task ends ``done`` with the unsplit model's logits (their timeouts are far away);
* no task gives two results: each task's ``done`` is published once on the pub/sub channel the
  long-polls listen to, and its record (finish time, logits) never changes once a client has seen it.

The faults: kill -9 of an executor of the route under supervision (it is restarted); Redis killed
with kill -9 and restarted (by the supervision, from its append-only file); Redis paused (SIGSTOP)
for 15 s, past the lease (shortened to 5 s here); kill -9 of an executor of the route with
supervision off (the route fails over). Each test prints its counts (in flight at the fault, done,
lost, duplicated).
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import torch

from edgesplit import wire
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from tooling.proc import free_port
from tooling.stack import ExecutorGroup, LocalStack, OrchestratorGroup, RedisGroup, StackSettings

pytestmark = [pytest.mark.redis, pytest.mark.services, pytest.mark.slow]
SPEC = get_spec("digits-cnn")
TASKS = 40
LEASE_S = 5.0
PAUSE_S = 15.0


class DoneMessages:
    """Counts the ``done`` messages per task id on the stack's pub/sub channel, reconnecting after a
    Redis restart (a message published while it reconnects may be missed: it can only undercount)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.channel = url, f"{prefix}done"
        self.counts: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = redis.Redis.from_url(self.url, socket_timeout=3, socket_connect_timeout=1)
                pubsub = client.pubsub()
                pubsub.subscribe(self.channel)
                while not self._stop.is_set():
                    msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if msg is not None:
                        self.counts[msg["data"].decode()] += 1
            except (redis.RedisError, OSError):
                time.sleep(0.2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    logs = tmp_path_factory.mktemp("fault-stack")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing there: the stack starts its own durable Redis
    with LocalStack(StackSettings(
            models=("digits-cnn",), split="paper", supervise=True, log_dir=logs,
            executor=ExecutorGroup(count=2, threads=2, extra={"slice_delay_s": 0.05}),
            orchestrator=OrchestratorGroup(extra={"lease_s": LEASE_S, "probe_interval_s": 0.2,
                                                  "slice_timeout_s": 5.0}),
            redis=RedisGroup(url=url, state_dir=logs / "redis-state", fsync="everysec"))) as st:
        assert st.redis_proc is not None, "the test needs a private redis-server, started by the stack"
        cfg = redis.Redis.from_url(url).config_get("append*")
        assert cfg["appendonly"] == "yes" and cfg["appendfsync"] == "everysec"
        yield st


@pytest.fixture(scope="module")
def model() -> torch.nn.Sequential:
    return load_model(SPEC, seed=0)


def _route_servers(c: httpx.Client) -> list[int]:
    route = c.get("/v1/models").json()["models"]["digits-cnn"]["route"]
    return sorted({m for step in route["steps"] for m in step["servers"]})


def _wait_all_up(c: httpx.Client, n: int) -> None:
    deadline = time.monotonic() + 90
    while sum(e["up"] for e in c.get("/v1/status").json()["executors"]) < n:
        assert time.monotonic() < deadline, "an executor never came back"
        time.sleep(0.2)


def _accept(c: httpx.Client, seed: int) -> tuple[list[str], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((1, *SPEC.input)).astype(np.float32) for _ in range(TASKS)]
    ids = []
    for x in xs:
        r = c.post("/v1/tasks", params={"model": "digits-cnn", "priority": 4, "timeout": 300},
                   content=wire.encode(x))
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    return ids, xs


def _in_flight_after(c: httpx.Client, ids: list[str], done: int) -> int:
    """Wait until ``done`` tasks are done; returns how many are not final then."""
    deadline = time.monotonic() + 60
    while True:
        statuses = [c.get(f"/v1/tasks/{i}", params={"logits": False}).json()["status"] for i in ids]
        if statuses.count("done") >= done:
            return sum(s in ("queued", "running") for s in statuses)
        assert time.monotonic() < deadline, statuses
        time.sleep(0.05)


def _results(c: httpx.Client, ids: list[str]) -> list[dict]:
    out = []
    for i in ids:
        deadline = time.monotonic() + 240
        while True:
            try:
                info = c.get(f"/v1/tasks/{i}", params={"wait": 30}).json()
            except httpx.HTTPError:  # the orchestrator answers 503 / not at all while Redis is away
                info = {"status": "unreachable"}
            if info.get("status") not in ("queued", "running", "unreachable", None):
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.2)
        out.append(info)
    return out


def _check(name: str, c: httpx.Client, st: LocalStack, done_msgs: DoneMessages, ids: list[str],
           xs: list[np.ndarray], in_flight: int, model: torch.nn.Sequential) -> None:
    infos = _results(c, ids)
    time.sleep(LEASE_S + 1)  # long enough for a stale attempt to have finished, had it been let through
    again = [c.get(f"/v1/tasks/{i}").json() for i in ids]
    done = sum(i["status"] == "done" for i in infos)
    changed = [a["id"] for a, b in zip(infos, again, strict=True)
               if (a.get("finished"), a.get("logits")) != (b.get("finished"), b.get("logits"))]
    twice = sorted(t for t in ids if done_msgs.counts[t] > 1)
    metrics = c.get("/metrics").text
    stale = sum(float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith("edgesplit_orchestrator_stale_results_total{"))
    print(f"\n[{name}] accepted {len(ids)}, in flight at the fault {in_flight}, done {done}, "
          f"lost {len(ids) - done}, two results {len(set(changed) | set(twice))}, "
          f"attempts > 1: {sum(int(i['attempts']) > 1 for i in infos)}, stale results dropped "
          f"(all faults so far): {stale:g}")
    assert [i["status"] for i in infos] == ["done"] * len(ids), [(i["status"], i.get("error")) for i in infos]
    assert not changed and not twice, (changed, twice)
    with torch.no_grad():
        for info, x in zip(infos, xs, strict=True):
            ref = model(torch.from_numpy(x))
            torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)


def test_killed_executor_under_supervision(stack: LocalStack, model: torch.nn.Sequential) -> None:
    done_msgs = DoneMessages(stack.redis_url, stack.prefix)
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        victim = _route_servers(c)[-1]
        ids, xs = _accept(c, seed=1)
        in_flight = _in_flight_after(c, ids, 3)
        restarts = len(stack.restarts)
        stack.kill_executor(victim)
        _check("kill -9 executor, supervised", c, stack, done_msgs, ids, xs, in_flight, model)
        _wait_all_up(c, 2)  # restarted by the supervision and probed back by the orchestrator
    done_msgs.close()
    assert (f"executor-{victim}", ) in [(n,) for n, _ in stack.restarts[restarts:]]


def test_redis_killed_and_restarted(stack: LocalStack, model: torch.nn.Sequential) -> None:
    done_msgs = DoneMessages(stack.redis_url, stack.prefix)
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        ids, xs = _accept(c, seed=2)
        in_flight = _in_flight_after(c, ids, 3)
        restarts = len(stack.restarts)
        stack.kill_redis()  # SIGKILL; the supervision starts it again from its append-only file
        _check("kill -9 redis, restarted", c, stack, done_msgs, ids, xs, in_flight, model)
    done_msgs.close()
    assert "redis" in [n for n, _ in stack.restarts[restarts:]]


def test_redis_paused_past_the_lease(stack: LocalStack, model: torch.nn.Sequential) -> None:
    done_msgs = DoneMessages(stack.redis_url, stack.prefix)
    assert stack.redis_proc is not None
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        ids, xs = _accept(c, seed=3)
        in_flight = _in_flight_after(c, ids, 3)
        stack.redis_proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(PAUSE_S)
        finally:
            stack.redis_proc.send_signal(signal.SIGCONT)
        _check(f"redis paused {PAUSE_S:g} s, lease {LEASE_S:g} s", c, stack, done_msgs, ids, xs, in_flight,
               model)
    done_msgs.close()


def test_killed_route_executor_without_supervision(stack: LocalStack, model: torch.nn.Sequential) -> None:
    done_msgs = DoneMessages(stack.redis_url, stack.prefix)
    stack.supervise = False  # no watchdog: the killed executor stays dead, the route fails over
    try:
        with httpx.Client(base_url=stack.url, timeout=30) as c:
            _wait_all_up(c, 2)
            victim = _route_servers(c)[0]
            ids, xs = _accept(c, seed=4)
            in_flight = _in_flight_after(c, ids, 3)
            stack.kill_executor(victim)
            _check("kill -9 route executor, no supervision", c, stack, done_msgs, ids, xs, in_flight, model)
            assert not stack.executors[victim].alive  # type: ignore[union-attr]
    finally:
        stack.supervise = True
        done_msgs.close()


def test_the_stack_keeps_the_keys_of_tasks_it_still_holds(tmp_path: Path) -> None:
    """``stop`` never deletes the keys of a stack that still holds tasks: a stack started again on
    them (same Redis, same prefix) runs them to the end."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    state = tmp_path / "redis-state"
    body = wire.encode(np.zeros((1, *SPEC.input), np.float32))
    first = LocalStack(StackSettings(
        models=("digits-cnn",), log_dir=tmp_path / "first",
        executor=ExecutorGroup(count=1, threads=2, extra={"slice_delay_s": 2.0}),
        orchestrator=OrchestratorGroup(extra={"drain_s": 0.0}), redis=RedisGroup(url=url, state_dir=state)))
    with first, httpx.Client(base_url=first.url, timeout=30) as c:
        ids = [c.post("/v1/tasks", params={"model": "digits-cnn", "timeout": 300}, content=body).json()["id"]
               for _ in range(5)]
    # stopped with tasks queued (each slice takes 2 s): the Redis it started went with it, its file stays
    with LocalStack(StackSettings(
            models=("digits-cnn",), log_dir=tmp_path / "second",
            executor=ExecutorGroup(count=1, threads=2),
            redis=RedisGroup(url=url, state_dir=state, prefix=first.prefix))) as second, \
            httpx.Client(base_url=second.url, timeout=30) as c:
        infos = [c.get(f"/v1/tasks/{i}", params={"wait": 60, "logits": False}).json() for i in ids]
    assert [i["status"] for i in infos] == ["done"] * len(ids), infos
