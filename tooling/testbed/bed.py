"""The testbed: the local stack spread over emulated hosts with their own addresses, shaped links and
CPU quotas (``edgesplit testbed up``; ``docs/ARCHITECTURE.md``, "Testbed").

``Testbed`` is a :class:`tooling.stack.LocalStack` whose executors and cloud each run in a host of
their own: a network namespace on a bridge (``net``), a cgroup with the host's CPU quota (``cgroups``),
the executor's capacity and speed read by the executor from its own cgroup, as in a pod. The
orchestrator (and the allocator) run on the gateway, the bridge's address in the root namespace, with
Redis. Before the orchestrator starts, the testbed measures what the planner needs and writes it into
the cluster file: each host's FLOPS (quota x a per-core figure measured here), the link rates (the tbf
rates, read back from the kernel), the per-request overhead of each service and a stage's fan-out
cost (``calibrate``); after it starts, the controller's per-task overhead from a few real tasks.

A state file (``<state_dir>/<prefix>/state.json``) records what ``up`` made, and ``down`` removes every
namespace, link, cgroup and process named from the prefix whether or not the state file survived.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgesplit import wire
from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from edgesplit.plan.cluster import Server, cluster_from_dict, dump_cluster
from edgesplit.plan.latency import throttle_delay
from tooling.proc import ServiceProcess, spawn, wait_ready
from tooling.stack import MODULES, LocalStack, StackSettings
from tooling.testbed import calibrate, cgroups, net
from tooling.testbed.description import TestbedDescription, check_prefix

log = logging.getLogger("edgesplit.testbed")
STATE_DIR = Path("/run/edgesplit-testbed")
EXECUTOR_PORT, CLOUD_PORT, ALLOCATOR_PORT = 8101, 8102, 8090
CALIBRATION_TASKS = 12


class Testbed(LocalStack):
    """The stack on emulated hosts (module docstring), run with ``settings`` (serving mode, split,
    pipeline, allocator, extra settings, weights, logs); what the description fixes (executors, models,
    Redis, prefix, the gateway's port, the cloud's threads, separate hosts) overrides them.
    ``edge_threads``: every executor's zone, where the description leaves it to the quota; ``measure``:
    run the calibration (False: the cluster file gets the per-core figure given in ``per_core`` and no
    overheads, for quick tests)."""

    __test__ = False

    def __init__(self, desc: TestbedDescription, settings: StackSettings | None = None, measure: bool = True,
                 per_core: dict[str, float] | None = None, state_dir: Path = STATE_DIR,
                 progress: Callable[[str], None] | None = None, profile_points: int = 10) -> None:
        self.desc = desc
        self.progress = progress or (lambda line: log.info("%s", line))
        self.home = state_dir / desc.prefix
        cfg = settings or StackSettings()
        super().__init__(replace(
            cfg, models=tuple(desc.models), executor=replace(cfg.executor, count=len(desc.edges)),
            cloud=replace(cfg.cloud, threads=max(1, int(desc.cloud.cpus))),
            orchestrator=replace(cfg.orchestrator, port=desc.gateway.port),
            redis=replace(cfg.redis, url=desc.gateway.redis_url, prefix=f"{desc.prefix}:"),
            log_dir=cfg.log_dir or self.home / "logs", keep_logs=True, shared_host=False))
        # the orchestrator listens on the gateway's address, not loopback: closed by default, so a token
        self.api_token = str(self.extra_orch.setdefault("api_token", secrets.token_hex(24)))
        self.exec_ports = [EXECUTOR_PORT] * len(desc.edges)
        self.cloud_port = CLOUD_PORT
        self.alloc_port = ALLOCATOR_PORT if self.with_allocator else 0
        self.cluster_path = self.home / "cluster.yaml"
        self.measure = measure
        self.per_core = per_core
        self.profile_points = profile_points
        self.profiles: dict[str, dict[str, Any]] = {}
        self.overheads: dict[str, float] = {}
        self.controller_overhead_s = 0.0
        self.stage_times: dict[int, float] = {}  # calibrate.stage_times
        self.fanout_s: dict[int, float] = {}  # Cluster.fanout_s (_measure_fanout)
        self._built = False

    # --- where each role runs ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.desc.address('gateway')}:{self.orch_port}"

    def host_of(self, role: str, index: int = 0) -> str:
        return {"executor": f"e{index}", "cloud": "cloud"}.get(role, "gateway")

    def _common(self, role: str, name: str, port: int) -> dict[str, object]:
        index = int(name.rsplit("-", 1)[1]) if role == "executor" else 0
        return {**super()._common(role, name, port), "host": self.desc.address(self.host_of(role, index))}

    def _settings(self, role: str, index: int) -> dict[str, object]:
        out = super()._settings(role, index)
        if role == "executor":  # capacity from the host's cgroup, as in a pod, unless a zone is given
            out["threads"] = self.desc.edges[index].threads
        return out

    def _start(self, role: str, index: int = 0) -> ServiceProcess:
        env = self.role_env(role, index)
        prefix = f"EDGESPLIT_{role.upper()}_"
        host = self.host_of(role, index)
        group = cgroups.path(self.desc.prefix, host)
        ns = None if host == "gateway" else net.netns(self.desc, host)
        command = cgroups.shell_prefix(group, ns) + shlex.join([sys.executable, "-m", MODULES[role]])
        svc = spawn(env[f"{prefix}NAME"], ["sh", "-c", command], env, int(env[f"{prefix}PORT"]), self.log_dir)
        return replace(svc, url=f"http://{self.desc.address(host)}:{env[f'{prefix}PORT']}")

    # --- build, measure, tear down ------------------------------------------------------------

    def build(self) -> None:
        """Namespaces, links, shaping and cgroups (after removing any left by an earlier testbed)."""
        net.preflight(self.desc.prefix)
        cgroups.version()
        running = hosted_pids(self.desc.prefix)
        if running:
            raise InvalidInput(f"testbed {self.desc.prefix} is up ({len(running)} process(es) in its hosts): "
                               f"`edgesplit testbed down --prefix {self.desc.prefix}` first (a second "
                               f"testbed needs its own prefix, subnet and port: a description file)")
        teardown(self.desc.prefix)  # what a killed one left: its namespaces, links and cgroups
        taken = net.subnet_users(self.desc)
        if taken:
            raise InvalidInput(f"the testbed's subnet {self.desc.subnet} is in use here "
                               f"({', '.join(taken)}): give it another private /24 (`subnet:` in a "
                               f"description file)")
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "state.json").write_text(json.dumps({"prefix": self.desc.prefix,
                                                          "description": self.desc.model_dump()}))
        self._built = True
        net.build(self.desc)
        gateway = self.desc.address("gateway")
        for port in [self.desc.gateway.port, *([self.alloc_port] if self.with_allocator else [])]:
            if not net.port_free(gateway, port):  # before minutes of calibration, not after
                raise InvalidInput(f"port {port} is taken on the gateway's address {gateway} (a process "
                                   f"listens on every address): give the testbed another port (--port)")
        period = self.desc.cpu_period_ms
        cgroups.create(self.desc.prefix, "gateway", None, period)
        cgroups.create(self.desc.prefix, "cloud", self.desc.cloud.cpus, period)
        for i, edge in enumerate(self.desc.edges):
            cgroups.create(self.desc.prefix, f"e{i}", edge.cpus, period)

    def write_cluster(self) -> None:
        """The cluster file (module docstring); the overheads are those measured so far."""
        d = self.desc
        core = self.per_core or {"edge_flops_per_core": 50e9, "fc_flops_per_core": 8e9}
        conv = core.get("conv_flops_per_core", core["edge_flops_per_core"])
        executors = [{"name": f"executor-{i}", "url": f"http://{d.address(f'e{i}')}:{EXECUTOR_PORT}",
                      "threads": e.zone(), "flops_per_thread": core["edge_flops_per_core"],
                      "link_bps": 1e6 * min(e.up_mbps, e.down_mbps), "host": f"e{i}",
                      "overhead_s": self.overheads.get(f"executor-{i}", 0.0)} for i, e in enumerate(d.edges)]
        raw: dict[str, Any] = {
            "executors": executors,
            "hosts": {f"e{i}": {"cores": e.cpus, "cpu_period_s": d.cpu_period_ms / 1000}
                      for i, e in enumerate(d.edges)},
            "cloud": {"url": f"http://{d.address('cloud')}:{CLOUD_PORT}",
                      "flops": core["fc_flops_per_core"] * d.cloud.cpus,
                      "conv_flops": conv * d.cloud.cpus,
                      "link_bps": 1e6 * min(d.cloud.up_mbps, d.cloud.down_mbps),
                      "overhead_s": self.overheads.get("cloud", 0.0)},
            "controller": {"overhead_s": self.controller_overhead_s, "fanout_s": self.fanout_s},
            "models": self.models, "profiles": self.profiles}
        self.home.mkdir(parents=True, exist_ok=True)
        dump_cluster(cluster_from_dict(raw), self.cluster_path)

    def start(self, timeout_s: float = 300.0) -> Testbed:
        """Build the hosts, start the services in them, measure, start the gateway; ready to serve."""
        try:
            self.build()
            self._ensure_redis()
            if self.measure and self.per_core is None:
                self.progress("measuring one core's FLOPS on the model, then a host's under its quota")
                self.per_core = self._calibrate()
            if self.measure and self.profile_points and not self.profiles:
                self.progress("profiling the slices' efficiency (thread CPU time, the planner's unit counts)")
                self.profiles = calibrate.profiles(self.models, points=self.profile_points,
                                                   reps=5 if self.profile_points >= 8 else 2)
            self.write_cluster()
            self.progress(f"starting the cloud and {self.n_executors} executors in their hosts")
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            self.cloud = self._start("cloud")
            self.executors = [self._start("executor", i) for i in range(self.n_executors)]
            for svc in [self.cloud, *self.executors]:
                assert svc is not None
                wait_ready(svc, timeout_s=timeout_s)
            if self.measure:
                self.progress("measuring each host's per-request overhead, and a stage's fan-out")
                self._measure_overheads()
                self._measure_fanout()
            self.write_cluster()
            wait_ready(self.start_orchestrator(), timeout_s=timeout_s)
            if self.with_allocator:
                wait_ready(self.start_allocator(), timeout_s=timeout_s)
            if self.measure:
                self.progress("measuring the controller's per-task overhead")
                self._measure_controller()
                self.write_cluster()
        except BaseException:
            self.stop()
            raise
        return self

    def recalibrate(self) -> None:
        """Measure the per-core figures again (``_calibrate``) and rewrite the cluster file. This
        machine's speed drifts by tens of percent within minutes (one core's FLOPS on alexnet-paper read
        75.8 G at 09:21 and 98.9 G at 11:25 on 2026-11-30), so a benchmark re-measures just before the
        points it compares with each other and with their predictions."""
        if self.measure:
            self.per_core = self._calibrate()
            self.write_cluster()

    def _calibrate(self) -> dict[str, float]:
        """Per core of quota: ``edge_flops_per_core`` (the edge layers) measured inside the first edge
        host, ``fc_flops_per_core`` and ``conv_flops_per_core`` inside the cloud host, each divided by
        that host's quota; and the unlimited core's figures with the quotas' efficiency beside them."""
        prefix = self.desc.prefix
        core = calibrate.per_core(self.models)
        # 15 runs under the quota: with 7 the edge host's efficiency read 0.56 to 0.88 within one bench
        edge = calibrate.per_core(self.models, runs=15, cgroup=cgroups.path(prefix, "e0"))
        cloud = calibrate.per_core(self.models, runs=15, cgroup=cgroups.path(prefix, "cloud"))
        e_cpus, c_cpus = min(1.0, self.desc.edges[0].cpus), min(1.0, self.desc.cloud.cpus)
        out = {"edge_flops_per_core": edge["edge_flops_per_core"] / e_cpus,
               "conv_flops_per_core": cloud["edge_flops_per_core"] / c_cpus,
               "fc_flops_per_core": cloud["fc_flops_per_core"] / c_cpus,
               "unlimited_edge_flops_per_core": core["edge_flops_per_core"],
               "unlimited_fc_flops_per_core": core["fc_flops_per_core"]}
        out["edge_quota_efficiency"] = out["edge_flops_per_core"] / core["edge_flops_per_core"]
        out["fc_quota_efficiency"] = out["fc_flops_per_core"] / core["fc_flops_per_core"]
        return out

    def _measure_overheads(self) -> None:
        """Each service's per-request overhead (``calibrate.slice_overhead``, ``echo_overhead``)."""
        assert self.cloud is not None
        self.overheads["cloud"] = calibrate.echo_overhead(self.cloud.url, self.cloud_token)
        for i, svc in enumerate(self.executors):
            assert svc is not None
            edge = self.desc.edges[i]
            self.overheads[f"executor-{i}"] = calibrate.slice_overhead(svc.url, self.token, self.models[0],
                                                               1e6 * min(edge.up_mbps, edge.down_mbps))

    def _measure_fanout(self) -> None:
        """The cluster's fan-out cost (``Cluster.fanout``): how much a stage of n one-row slices sent
        at once takes beyond one (``calibrate.stage_times``), less what the model's CFS wait for the
        slowest of n hosts already adds (``latency.throttle_delay``, the first host's quota)."""
        urls = [svc.url for svc in self.executors if svc is not None]
        self.stage_times = calibrate.stage_times(urls, self.token, self.models[0])
        e = self.desc.edges[0]
        host = Server("e0", 1, 1.0, 1.0, host="e0", host_cores=e.cpus,
                      host_period_s=self.desc.cpu_period_ms / 1000)
        base = self.stage_times[1] - throttle_delay(host, 1)
        self.fanout_s = {n: max(0.0, t - throttle_delay(host, n) - base)
                         for n, t in self.stage_times.items() if n > 1}

    def _measure_controller(self) -> None:
        """The controller's per-task overhead: from a few real tasks, the client's time less what the
        edge stages and the cloud call took (``task_parts``: submit, queue, result and the rest)."""
        from services.orchestrator.client import OrchestratorClient
        from tooling.workload import random_input, task_parts

        spec = get_spec(self.models[0])
        spent = []
        with OrchestratorClient(self.url, token=self.api_token) as oc:
            for i in range(CALIBRATION_TASKS + 2):
                sent, t0 = time.time(), time.perf_counter()
                info = oc.run(wire.encode(random_input(spec, i)), spec.name, priority=1, logits=False)
                received = sent + time.perf_counter() - t0
                if info["status"] != "done":
                    raise RuntimeError(f"calibration task {info['id']} {info['status']}: {info.get('error')}")
                parts = task_parts(info, sent, received)
                if i >= 2:
                    spent.append(parts["submit"] + parts["queue"] + parts["result"] + parts["other"])
                time.sleep(0.05)
        self.controller_overhead_s = statistics.median(spent)

    def set_cpus(self, host: str, cpus: float) -> None:
        """Change a host's CPU quota while it runs (a noisy neighbour, or an in-place resize)."""
        cgroups.create(self.desc.prefix, host, cpus, self.desc.cpu_period_ms)

    def stop(self) -> None:
        """Stop the services (the stack's order), then remove the hosts."""
        with contextlib.suppress(Exception):
            super().stop()
        if self._built:
            teardown(self.desc.prefix)
            (self.home / "state.json").unlink(missing_ok=True)
            self._built = False


def hosted_pids(prefix: str) -> list[int]:
    """Live processes in the prefix's cgroups and namespaces, other than this one."""
    found = set(cgroups.pids(prefix))
    for ns in net.namespaces(prefix):
        found.update(net.netns_pids(ns))
    found.discard(os.getpid())
    return sorted(p for p in found if cgroups.alive(p))


def teardown(prefix: str) -> list[str]:
    """Kill every process in the prefix's cgroups and namespaces, then remove the namespaces, links and
    cgroups named from it. Safe to call when nothing is there; returns what was removed."""
    victims = hosted_pids(prefix)
    cgroups.kill(victims)
    removed = [f"process {p}" for p in sorted(victims)]
    removed += net.remove_all(prefix)
    removed += cgroups.remove_all(prefix)
    return removed


def status(prefix: str, state_dir: Path = STATE_DIR) -> dict[str, Any]:
    """What exists now under ``prefix``: per host its address, the tbf rates read back, the cgroup's
    quota and throttling, and its processes; plus any link or namespace of the prefix."""
    state_file = state_dir / check_prefix(prefix) / "state.json"
    out: dict[str, Any] = {"prefix": prefix, "namespaces": net.namespaces(prefix), "links": net.links(prefix),
                           "hosts": {}}
    if not state_file.exists():
        return out
    desc = TestbedDescription.model_validate(json.loads(state_file.read_text())["description"])
    for host in desc.hosts():
        group = cgroups.path(prefix, host)
        up, down = net.link_rates(desc, host)
        q = cgroups.quota(group)
        out["hosts"][host] = {"address": desc.address(host), "up_bps": up, "down_bps": down,
                              "cpus": None if q is None else q.cpus,
                              "period_us": None if q is None else q.period_us,
                              "throttling": cgroups.throttling(group),
                              "pids": net.netns_pids(net.netns(desc, host))}
    out["cluster_file"] = str(state_dir / prefix / "cluster.yaml")
    out["url"] = f"http://{desc.address('gateway')}:{desc.gateway.port}"
    return out


def remove_state(prefix: str, state_dir: Path = STATE_DIR) -> None:
    shutil.rmtree(state_dir / check_prefix(prefix), ignore_errors=True)
