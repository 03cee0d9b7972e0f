"""Customers of the edgesplit orchestrator: image tasks with a priority mix, checked answers.

Run it in its own process (never import it next to httpx), e.g.::

    locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8080 -u 4 -r 4 -t 20s \\
        --samples out/samples/samples.json --priority-mix 1:10,3:30,5:60 TaskCustomer

``samples.json`` comes from ``loadtest.samples.write_samples`` (the PNGs, each with the top-1 class the
stack must answer). Every customer is a closed loop: it submits one task, waits for its result, thinks
``--think-s`` seconds and submits the next, so the number of users is the customer density.

* ``TaskCustomer``: ``POST /v1/tasks`` (the PNG) then long-polls ``GET /v1/tasks/{id}?wait=``; the
  whole task, submit to result, is reported as request ``task pN`` (type ``TASK``) for priority N.
* ``V2Customer``: one synchronous KServe V2 ``POST /v2/models/{model}/infer`` (the decoded tensor as
  JSON), reported as ``infer pN``.

A wrong top-1 class, a task that ends ``failed`` or ``expired``, or an unexpected status code is a
failure. Options (each also an environment variable): ``--samples`` (``ES_SAMPLES``),
``--priority-mix`` (``ES_PRIORITY_MIX``, default 10% priority 1, 30% priority 3, 60% priority 5),
``--task-timeout`` seconds (``ES_TASK_TIMEOUT``), ``--think-s`` (``ES_THINK_S``), ``--mix-seed``
(``ES_SEED``), ``--api-token`` (``ES_API_TOKEN``, what the chart's locust Job passes from the secret's
``api-token``): when set, every request carries ``Authorization: Bearer <token>``.
``SteppedDensity`` is active only when ``ES_STEPS`` is set (e.g. ``1,2,4,8,16``, each step
``ES_STEP_S`` seconds, users started at once), and then replaces ``-u``/``-r``/``-t``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, LoadTestShape, events, task
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest.mix import DEFAULT_MIX, parse_mix, parse_users, step_at

POLL_S = 30.0  # longest single long-poll; a task still running after it is polled again
SAMPLES: list[dict[str, Any]] = []
CONFIG: dict[str, Any] = {}
_user_ids = itertools.count()


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--samples", env_var="ES_SAMPLES", default="",
                        help="samples.json with the expected classes (loadtest.samples)")
    parser.add_argument("--priority-mix", env_var="ES_PRIORITY_MIX", default=DEFAULT_MIX,
                        help="PRIORITY:WEIGHT,... (1 = most urgent)")
    parser.add_argument("--task-timeout", env_var="ES_TASK_TIMEOUT", type=float, default=60.0,
                        help="per-task timeout sent to the orchestrator, seconds")
    parser.add_argument("--think-s", env_var="ES_THINK_S", type=float, default=0.0,
                        help="pause of a customer between a result and its next task, seconds")
    parser.add_argument("--mix-seed", env_var="ES_SEED", type=int, default=0,
                        help="seed of the customers' priority and sample choices")
    parser.add_argument("--api-token", env_var="ES_API_TOKEN", default="", is_secret=True,
                        help="the orchestrator's public API token, sent as a bearer token (unset: none)")


@events.init.add_listener
def _load(environment: Environment, **_kwargs: Any) -> None:
    """Read the samples and the options once per process."""
    opts = environment.parsed_options
    if opts is None:
        return
    if not opts.samples:
        raise SystemExit("locustfile: --samples (or ES_SAMPLES) must name a samples.json")
    meta = json.loads(Path(opts.samples).read_text())
    SAMPLES.clear()
    for s in meta["samples"]:
        tensor = {"name": "input", "shape": s["shape"], "datatype": "FP32", "data": s["data"]}
        SAMPLES.append({"top1": s["top1"], "body": Path(s["image"]).read_bytes(),
                        "v2_tensor": json.dumps(tensor)})  # serialised once, not per request
    mix = parse_mix(opts.priority_mix)
    CONFIG.update(model=meta["model"], priorities=list(mix), weights=list(mix.values()),
                  timeout=opts.task_timeout, think=opts.think_s, seed=opts.mix_seed,
                  token=opts.api_token or None)


class Customer(HttpUser):
    """One customer: picks a priority from the mix and a sample, seeded per user."""

    abstract = True

    def on_start(self) -> None:
        self.rng = random.Random(CONFIG["seed"] * 1_000_003 + next(_user_ids))
        if CONFIG.get("token"):
            self.client.headers["Authorization"] = f"Bearer {CONFIG['token']}"

    def wait_time(self) -> float:
        return float(CONFIG["think"])

    def pick(self) -> tuple[int, dict[str, Any]]:
        prio = self.rng.choices(CONFIG["priorities"], CONFIG["weights"])[0]
        return prio, self.rng.choice(SAMPLES)

    def report(self, prio: int, started: float, error: str | None) -> None:
        """The whole task, submit to result, as request ``task pN``."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.environment.events.request.fire(
            request_type="TASK", name=f"task p{prio}", response_time=elapsed_ms, response_length=0,
            response=None, context={}, exception=None if error is None else RuntimeError(error))


def _top1_error(got: Any, want: int) -> str | None:
    return None if got == want else f"wrong answer: top-1 class {got}, expected {want}"


class TaskCustomer(Customer):
    """Submits through ``POST /v1/tasks`` and long-polls ``GET /v1/tasks/{id}?wait=``."""

    @task
    def image_task(self) -> None:
        prio, sample = self.pick()
        started = time.perf_counter()
        task_id, error = self.submit(prio, sample)
        if task_id is not None:
            error = self.result(task_id, prio, sample["top1"], started + CONFIG["timeout"] + 5.0)
        self.report(prio, started, error)

    def submit(self, prio: int, sample: dict[str, Any]) -> tuple[str | None, str | None]:
        url = f"/v1/tasks?model={CONFIG['model']}&priority={prio}&timeout={CONFIG['timeout']}"
        with self.client.post(url, data=sample["body"], headers={"Content-Type": "image/png"},
                              name=f"POST /v1/tasks p{prio}", catch_response=True) as r:
            if r.status_code != 202:
                r.failure(f"submit: HTTP {r.status_code}: {r.text[:200]}")
                return None, f"submit HTTP {r.status_code}"
            try:
                return str(r.json()["id"]), None
            except (ValueError, KeyError) as e:
                r.failure(f"submit: no task id in {r.text[:200]!r}")
                return None, f"submit: {e!r}"

    def result(self, task_id: str, prio: int, want: int, deadline: float) -> str | None:
        """Long-poll until the task ends; the error text, or None when it is done and right."""
        while True:
            wait = max(0.0, min(POLL_S, deadline - time.perf_counter()))
            with self.client.get(f"/v1/tasks/{task_id}?wait={wait:.1f}&top_k=1&logits=false",
                                 name=f"GET /v1/tasks/[id] p{prio}", catch_response=True) as r:
                error, done = _check_task(r, want)
                if error is not None:
                    r.failure(error)
                    return error
                r.success()
                if done:
                    return None
            if time.perf_counter() >= deadline:
                return f"task {task_id} not finished {CONFIG['timeout']} s after its submission"


def _check_task(r: Any, want: int) -> tuple[str | None, bool]:
    """(error, finished) from one ``GET /v1/tasks/{id}`` answer."""
    if r.status_code != 200:
        return f"poll: HTTP {r.status_code}: {r.text[:200]}", True
    try:
        view = r.json()
        status = view["status"]
    except (ValueError, KeyError):
        return f"poll: not a task view: {r.text[:200]!r}", True
    if status in ("queued", "running"):
        return None, False
    if status != "done":
        return f"task {status}: {view.get('error', 'no detail')}", True
    top = view.get("top_k") or [{}]
    return _top1_error(top[0].get("class"), want), True


class V2Customer(Customer):
    """Synchronous KServe V2 ``infer`` with ``parameters.priority``."""

    @task
    def infer(self) -> None:
        prio, sample = self.pick()
        timeout_us = round(CONFIG["timeout"] * 1e6)  # V2 timeouts are in microseconds, as Triton's
        body = (f'{{"inputs": [{sample["v2_tensor"]}], '
                f'"parameters": {{"priority": {prio}, "timeout": {timeout_us}}}}}')
        with self.client.post(f"/v2/models/{CONFIG['model']}/infer", data=body, name=f"infer p{prio}",
                              headers={"Content-Type": "application/json"}, catch_response=True,
                              timeout=CONFIG["timeout"] + 10.0) as r:
            if r.status_code != 200:
                r.failure(f"infer: HTTP {r.status_code}: {r.text[:200]}")
                return
            try:
                got = r.json()["parameters"]["top_1"]
            except (ValueError, KeyError, TypeError):
                r.failure(f"infer: no parameters.top_1 in {r.text[:200]!r}")
                return
            error = _top1_error(got, sample["top1"])
            if error is not None:
                r.failure(error)
            else:
                r.success()


class SteppedDensity(LoadTestShape):
    """Stepped customer density: ``ES_STEPS`` users (e.g. ``1,2,4,8,16``), ``ES_STEP_S`` seconds each.

    Defined only when ``ES_STEPS`` is set (locust uses any shape class it finds, which would override
    ``-u``/``-t``); all users of a step start at once.
    """

    abstract = not os.environ.get("ES_STEPS")

    def __init__(self) -> None:
        super().__init__()
        self.steps = parse_users(os.environ.get("ES_STEPS", "1"))
        self.step_s = float(os.environ.get("ES_STEP_S", "20"))

    def tick(self) -> tuple[int, float] | None:
        users = step_at(self.steps, self.step_s, self.get_run_time())
        return None if users is None else (users, float(users))
