"""``edgesplit bench adapt``: how fast the allocator recovers the latency after an executor slows down.

On a local stack (redis, cloud, executors, orchestrator, allocator as processes):

1. warm-up with the exact policy, then (policy ``td3``, ``train_steps`` > 0) train an
   extended-observation TD3 policy for this very cluster, nominal speeds and overheads as the
   allocator measured them, conditions drawn around them (``edgesplit.alloc.train``), and restart
   the allocator with it; with ``train_steps`` 0 the shipped policy is used when one fits;
2. ``before``: tasks one after another, end-to-end latency of each (submit to result);
3. the executor with the most units in the plan is restarted with a per-slice delay (the executors'
   fault injection); the orchestrator and the allocator see it down, then back;
4. tasks go on. The slowdown is *felt* with the first task that runs a slice on the slow executor
   (``felt_after_s`` after it is back); recovery is the first moment the median of the last
   ``window`` tasks since then is within ``tolerance`` (20%) of the ``before`` median
   (``recovery_s`` after the slowdown was felt; 0 when the allocator planned around it before any
   task used it). ``during``: the tasks from its return to recovery; ``after``: the ``after_tasks``
   tasks that follow;
5. the allocator's decisions over the run: how often TD3's allocation was served and how often the
   exact fallback, the plan shift for the slow executor and when it came.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import yaml

from edgesplit import wire
from edgesplit.errors import InvalidPlan
from edgesplit.models import get_spec
from services.orchestrator.client import OrchestratorClient
from tooling.proc import ServiceProcess, start_module, wait_ready
from tooling.stack import ExecutorGroup, LocalStack, StackSettings
from tooling.testbed.bed import Testbed

Log = Callable[[str], None]


class Done(NamedTuple):
    """A finished task: when it finished (Unix s), its end-to-end latency (s), the executors it used."""

    finish: float
    e2e: float
    servers: frozenset[int]


@dataclass(frozen=True)
class AdaptConfig:
    """What the benchmark runs (seconds, tasks)."""

    model: str = "digits-cnn"
    executors: int = 3
    threads: int = 4
    delay_s: float = 0.05
    period_s: float = 1.0
    measure_s: float = 0.25
    policy: str = "td3"
    train_steps: int = 2000
    before_tasks: int = 30
    after_tasks: int = 30
    window: int = 10
    tolerance: float = 0.2
    timeout_s: float = 120.0
    seed: int = 0
    testbed: bool = False  # on testbed hosts (root): the slowdown lowers one host's CPU quota
    cpus: float = 0.5  # testbed: each edge host's quota, cores
    slow_factor: float = 4.0  # testbed: the slowed host keeps 1 / slow_factor of its quota
    cloud_cpus: float | None = None  # testbed: the cloud host's quota (None: the testbed bench's)


def _stats(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"n": 0, "median_ms": None, "p90_ms": None}
    ms = sorted(1e3 * v for v in latencies)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p90_ms": p90}


def _moment(d: dict[str, Any], name: str, t_slow: float) -> dict[str, Any]:
    """One decision of the timeline, as the slowed executor saw it (time relative to its return)."""
    measured = d["measured"].get(name, {})
    return {"t": round(d["time"] - t_slow, 3), "trigger": d["trigger"], "served": d.get("served"),
            "published": d["published"], "units": d["units"].get(name),
            "speed": measured.get("flops_per_thread"), "overhead_s": measured.get("overhead_s")}


def busiest(units: dict[str, int]) -> str:
    """The executor with the most units of the plan, the one to slow down; InvalidPlan when none has
    any (the edge-cloud cut sends the whole model to the cloud): slowing one would change nothing, and
    the benchmark would time a recovery from nothing."""
    name = max(units, key=lambda n: units[n])
    if units[name] == 0:
        raise InvalidPlan("the plan puts no layer on an edge host (the edge-cloud cut sends the whole "
                          f"model to the cloud: units {units}), so slowing one would change nothing; "
                          "give the cloud less CPU (--cloud-cpus) or the hosts more (--cpus)")
    return name


class Adapt:
    """One run of the benchmark (module docstring)."""

    def __init__(self, config: AdaptConfig, log: Log) -> None:
        self.c = config
        self.log = log
        rng = np.random.default_rng(config.seed)
        self.body = wire.encode(rng.standard_normal((1, *get_spec(config.model).input)).astype(np.float32))
        self.stack: LocalStack | None = None
        self.allocator: ServiceProcess | None = None
        self.trained: dict[str, Any] | None = None

    def start_allocator(self, policy: str, policy_file: Path | None = None) -> httpx.Client:
        st = self.stack
        assert st is not None
        if self.allocator is not None:
            self.allocator.stop()
        settings: dict[str, object] = {
            "redis_url": st.redis_url, "prefix": st.prefix, "cluster_file": st.cluster_path,
            "token": st.allocator_token, "models": self.c.model, "policy": policy,
            "period_s": self.c.period_s, "measure_s": self.c.measure_s}
        if policy_file is not None:
            settings["policy_file"] = policy_file
        self.allocator = start_module("allocator", "services.allocator", "EDGESPLIT_ALLOCATOR_", settings,
                                      st.log_dir)
        return httpx.Client(base_url=self.allocator.url,
                            headers={"Authorization": f"Bearer {st.allocator_token}"}, timeout=30,
                            trust_env=False)

    def task(self, oc: OrchestratorClient) -> Done:
        """One task to the end."""
        info = oc.result(oc.submit(self.body, self.c.model, priority=1), wait_s=60, logits=False)
        if info["status"] != "done":
            raise RuntimeError(f"task {info['id']} ended {info['status']}: {info.get('error')}")
        servers = frozenset(m for st in info.get("timings", {}).get("stages", []) for m in st["servers"])
        return Done(time.time(), float(info["e2e_s"]), servers)

    def train(self, alloc: httpx.Client, oc: OrchestratorClient) -> Path:
        """Train TD3 for this cluster as measured (module docstring); returns the policy folder."""
        from edgesplit.alloc.train import TrainConfig, train

        assert self.stack is not None
        for _ in range(2 * self.c.window):
            self.task(oc)
        measured = alloc.get("/v1/decisions", params={"limit": 1}).json()["decisions"][-1]["measured"]
        raw = yaml.safe_load(self.stack.cluster_path.read_text())
        for ex in raw["executors"]:
            m = measured[ex["name"]]
            ex.update(flops_per_thread=m["flops_per_thread"], overhead_s=m["overhead_s"])
        out = self.stack.log_dir / "td3-adapt"
        out.mkdir(exist_ok=True)
        (out / "cluster.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        self.log(f"training TD3 (extended observation), {self.c.train_steps} steps, on the measured cluster")
        config = TrainConfig(model=self.c.model, scenario=str(out / "cluster.yaml"), obs="extended",
                             steps=self.c.train_steps, seed=self.c.seed,
                             learning_starts=min(1000, self.c.train_steps // 4))
        t0 = time.perf_counter()
        summary = train(config, out / "policy")
        self.trained = {"steps": self.c.train_steps, "seconds": time.perf_counter() - t0,
                        "gap_at_nominal": summary.get("gap"), "command": summary.get("command")}
        return out / "policy"

    def warm_up(self, alloc: httpx.Client, oc: OrchestratorClient) -> None:
        """Tasks until the allocator has a plan and every executor has been measured for a while."""
        deadline = time.monotonic() + self.c.timeout_s
        while alloc.get(f"/v1/plan/{self.c.model}").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the allocator published no plan")
            self.task(oc)
        for _ in range(2 * self.c.window):
            self.task(oc)

    def slow_down(self, alloc: httpx.Client) -> tuple[str, int, float, float]:
        """Restart the executor with the most units with the delay: (name, its units, seconds it was
        down, time it answered ready again)."""
        st = self.stack
        assert st is not None
        units = alloc.get("/v1/decisions", params={"limit": 1}).json()["decisions"][-1]["units"]
        name = busiest(units)
        if isinstance(st, Testbed):  # a real slow server: its host keeps a fraction of its CPU quota
            index = int(name.rsplit("-", 1)[1])
            cpus = st.desc.edges[index].cpus / self.c.slow_factor
            st.set_cpus(f"e{index}", cpus)
            self.log(f"{name} ({units[name]} units): its host's quota lowered to {cpus:g} core")
            return name, int(units[name]), 0.0, time.time()
        st.extra_exec = {"slice_delay_s": self.c.delay_s}
        t0 = time.time()
        st.kill_executor(int(name.rsplit("-", 1)[1]))
        wait_ready(st.start_executor(int(name.rsplit("-", 1)[1])))
        back = time.time()
        self.log(f"{name} ({units[name]} units) restarted with a per-slice delay of "
                 f"{1e3 * self.c.delay_s:.0f} ms")
        return name, int(units[name]), back - t0, back

    def recover(self, oc: OrchestratorClient, baseline_s: float,
                slow: int) -> tuple[list[Done], float | None, float | None]:
        """Tasks until the latency is back (module docstring): (tasks, when the first task ran on the
        slow executor, when the median of the last ``window`` tasks since then was within
        ``tolerance`` of ``baseline_s``). No task on the slow executor in ``3 * window`` tasks: the
        allocator planned around it before it was felt (recovered at once)."""
        done: list[Done] = []
        hit: float | None = None
        deadline = time.monotonic() + self.c.timeout_s
        while time.monotonic() < deadline:
            t = self.task(oc)
            done.append(t)
            if hit is None:
                if slow in t.servers:
                    hit = t.finish
                elif len(done) >= 3 * self.c.window:
                    return done, None, t.finish
                continue
            last = [d.e2e for d in done if d.finish >= hit][-self.c.window:]
            if len(last) == self.c.window and statistics.median(last) <= (1 + self.c.tolerance) * baseline_s:
                return done, hit, t.finish
        return done, hit, None

    def _stack(self) -> LocalStack:
        c = self.c
        if c.testbed:
            from tooling.testbed.bench import CLOUD_CPUS
            from tooling.testbed.description import uniform

            # the testbed bench's half-core cloud: with a whole core the planner's edge-cloud cut sends
            # alexnet-paper to the cloud whole, and slowing an edge host would change nothing
            desc = uniform(c.executors, cpus=c.cpus, models=[c.model],
                           cloud_cpus=CLOUD_CPUS if c.cloud_cpus is None else c.cloud_cpus)
            return Testbed(desc, StackSettings(seed=c.seed))
        return LocalStack(StackSettings(models=(c.model,), seed=c.seed, shared_host=False,
                                        executor=ExecutorGroup(count=c.executors, threads=c.threads)))

    def run(self) -> dict[str, Any]:
        c = self.c
        pretrain = c.policy == "td3" and c.train_steps > 0
        # separate machines: the plan spreads over the executors, so slowing one of them matters
        with self._stack() as st:
            self.stack = st
            try:
                alloc = self.start_allocator("exact" if pretrain else c.policy)
                with OrchestratorClient(st.url, token=getattr(st, "api_token", None)) as oc:
                    self.warm_up(alloc, oc)
                    if pretrain:
                        alloc = self.start_allocator("td3", self.train(alloc, oc))
                        self.warm_up(alloc, oc)
                    t_start = time.time()
                    self.log(f"before: {c.before_tasks} tasks")
                    before = [self.task(oc).e2e for _ in range(c.before_tasks)]
                    name, units, down_s, t_slow = self.slow_down(alloc)
                    during, hit, recovered = self.recover(oc, statistics.median(before),
                                                          int(name.rsplit("-", 1)[1]))
                    self.log("recovered" if recovered else f"not recovered within {c.timeout_s} s")
                    after = [self.task(oc).e2e for _ in range(c.after_tasks)] if recovered else []
                    decisions = [d for d in alloc.get("/v1/decisions", params={"limit": 100_000}).json()[
                        "decisions"] if d["time"] >= t_start]
            finally:
                if self.allocator is not None:
                    self.allocator.stop()
        return self.summary(before, during, after, (t_slow, hit, recovered), decisions, name, units, down_s)

    def summary(self, before: list[float], during: list[Done], after: list[float],
                times: tuple[float, float | None, float | None], decisions: list[dict[str, Any]], name: str,
                units: int, down_s: float) -> dict[str, Any]:
        """The benchmark's JSON (see docs/BENCHMARKS.md)."""
        t_slow, hit, recovered = times
        start = hit if hit is not None else t_slow
        shift = next((d for d in decisions if d["time"] >= t_slow and d["published"]
                      and name not in d["excluded"] and d["units"].get(name, 0) < units), None)
        served: dict[str, int] = {}
        for d in decisions:
            if d.get("served"):
                served[d["served"]] = served.get(d["served"], 0) + 1
        fallback_gap = sum(1 for d in decisions if d.get("served") == "exact" and d.get("td3_s") is not None)
        gaps = [d["td3_gap"] for d in decisions if d.get("td3_gap") is not None]
        base = _stats(before)["median_ms"]
        after_stats = _stats(after)
        return {
            "config": self.c.__dict__, "trained": self.trained,
            "slowed": {"executor": name, "units_before": units, "units_after": shift["units"][name] if shift
                       else None, "units_final": decisions[-1]["units"].get(name) if decisions else None,
                       "restart_s": down_s},
            "felt_after_s": hit - t_slow if hit is not None else None,
            "plan_shift_s": shift["time"] - t_slow if shift else None,
            "shift_trigger": shift["trigger"] if shift else None,
            "recovery_s": recovered - start if recovered else None,
            "latency": {"before": _stats(before), "during": _stats([d.e2e for d in during]),
                        "after": after_stats},
            "after_over_before": after_stats["median_ms"] / base if base and after_stats["median_ms"]
            else None,
            "timeline": [_moment(d, name, t_slow) for d in decisions if d["time"] >= t_slow - 1.0],
            "decisions": {"total": len(decisions), "published": sum(1 for d in decisions if d["published"]),
                          "served": served, "td3_fallbacks_gap": fallback_gap,
                          "td3_fallbacks_unavailable": sum(1 for d in decisions if d.get("served") == "exact"
                                                           and "TD3 not served" in (d.get("note") or "")),
                          "td3_gap_median": statistics.median(gaps) if gaps else None},
        }
