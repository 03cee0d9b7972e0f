"""The local stack: redis-server (only if none answers), the cloud, M executors, the orchestrator and,
optionally, the allocator service as processes on free loopback ports, with a cluster description
written for them.

``LocalStack`` is a context manager reused by ``edgesplit up``, ``edgesplit demo``, the benchmarks and
the integration tests::

    with LocalStack(StackSettings(models=("alexnet-paper",), executor=ExecutorGroup(count=2))) as stack:
        httpx.post(stack.url + "/v1/tasks", ...)

Every process logs to ``<log_dir>/<name>.log``. One random bearer token protects the internal calls
(orchestrator -> executors, cloud; allocator -> executors).

Each role gets the same list of ``EDGESPLIT_<ROLE>_*`` variables as in the Helm chart
(``charts/edgesplit/templates/_env.tpl``) and ``docker-compose.yml`` (``role_env`` shows them;
``tests/deploy/test_env_contract.py`` compares the three), plus the extra settings given here. The one
documented difference: the executor's ``THREADS`` is set here, since local processes have no cgroup CPU
limit each (in a pod, capacity follows the live cgroup limit, so the chart leaves it unset).

A unique Redis key prefix per stack keeps stacks apart on a
shared Redis; ``stop`` deletes its keys unless ``keep_keys`` or unless tasks are still queued or
running under them (those keys stay, so a stack started again with the same ``prefix`` resumes them).

Durability (docs/ARCHITECTURE.md, Guarantees): a redis-server started here (only when nothing answers
at ``redis_url``) keeps an append-only file in ``state_dir`` (``appendfsync`` = ``redis_fsync``,
``everysec`` by default) and refuses writes beyond ``redis_maxmemory`` (``noeviction``), as the chart
and compose run it. ``supervise=True`` (``edgesplit up`` sets it) restarts a process of the stack that
died (redis-server included), with a backoff of 1, 2, 4... up to 30 s, as the kubelet does (setting
the attribute to False later pauses that, True resumes it); ``stop``
stops the orchestrator first and gives it ``drain_s`` + 15 s to drain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlparse

import redis

from edgesplit.errors import Unavailable
from edgesplit.plan.cluster import cluster_from_dict, dump_cluster
from services.common.channels import PREFIX_PATTERN
from services.common.settings import cpu_limit
from tooling.proc import ServiceProcess, free_port, spawn, wait_ready

LOOPBACK_LINK_BPS = 10e9  # what the planner assumes of loopback links
# one slice request on loopback, compute excluded: HTTP round trip, NPY encode and decode, hand-off to
# the sub-zone's workers. Measured 2.2-3.5 ms on the 2-core development machine (``edge_transfer`` in
# ``edgesplit bench e2e``'s ``parts_ms`` for alexnet-paper; docs/BENCHMARKS.md, end-to-end section).
REQUEST_OVERHEAD_S = 3e-3
HOST_NAME = "localhost"  # the one machine every process of the stack shares
ROLES = ("executor", "cloud", "orchestrator", "allocator")
MODULES = {role: f"services.{role}" for role in ROLES}
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # restart delays of a process that keeps dying
HEALTHY_S = 60.0  # a process up this long starts its backoff again from the first delay
log = logging.getLogger("edgesplit.stack")


def redis_args(port: int, state_dir: Path, fsync: str = "everysec", maxmemory: str = "256mb") -> list[str]:
    """redis-server's arguments for edgesplit: AOF on (``appendfsync`` = ``fsync``) in ``state_dir``, no
    RDB snapshots, ``maxmemory`` with ``noeviction`` (a full Redis refuses writes: submits get 503,
    nothing already accepted is evicted). The chart and docker-compose.yml use the same settings."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(state_dir),
            "--appendonly", "yes", "--appendfsync", fsync, "--save", "", "--maxmemory", maxmemory,
            "--maxmemory-policy", "noeviction"]


def _defaults(role: str, *names: str) -> dict[str, object]:
    """The defaults of settings ``names`` in the role's settings class (what the chart's values mirror)."""
    cls = _settings_class(role)
    return {n: cls.model_fields[n].get_default(call_default_factory=True) for n in names}


def _env_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):  # pydantic-settings reads a dict setting as JSON
        return json.dumps({str(k): v for k, v in value.items()})
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def redis_durability(url: str) -> str:
    """A few words on how durable the Redis at ``url`` is (``edgesplit up`` prints them)."""
    try:
        raw: dict[Any, Any] = dict(redis.Redis.from_url(url, socket_timeout=2).config_get("append*"))
    except (redis.RedisError, OSError) as e:
        return f"persistence unknown: {e}"
    cfg = {_s(k): _s(v) for k, v in raw.items()}
    if cfg.get("appendonly") == "yes":
        return f"append-only file, appendfsync {cfg.get('appendfsync')}"
    return "WARNING: no append-only file, a Redis restart loses every task"


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def delete_keys(url: str, prefix: str) -> int:
    """Delete every key of the Redis at ``url`` that starts with ``prefix`` (a stack's or a testbed's,
    colon included); how many, 0 when Redis does not answer. A prefix that is empty or holds a glob
    character would match other deployments' keys: ValueError."""
    if not re.fullmatch(PREFIX_PATTERN, prefix):
        raise ValueError(f"refusing to delete Redis keys by the prefix {prefix!r} (services.common.channels)")
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        return len(keys)
    except (redis.RedisError, OSError):
        return 0


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


ROLE_SETTINGS = ("executor", "cloud", "orchestrator", "allocator")


def _settings_class(role: str) -> Any:
    """The role's pydantic settings class (what its ``EDGESPLIT_<ROLE>_*`` variables validate against)."""
    from services.allocator.settings import AllocatorSettings
    from services.cloud.settings import CloudSettings
    from services.executor.settings import ExecutorSettings
    from services.orchestrator.settings import OrchestratorSettings

    return {"executor": ExecutorSettings, "cloud": CloudSettings, "orchestrator": OrchestratorSettings,
            "allocator": AllocatorSettings}[role]


def _check_extra(role: str, extra: Mapping[str, object]) -> None:
    """Extra settings of a role must be fields of its settings class (a typo would be ignored there)."""
    unknown = sorted(set(extra) - set(_settings_class(role).model_fields))
    if unknown:
        raise ValueError(f"{role} settings {', '.join(unknown)}: not settings of the {role} "
                         f"(see services/{role}/settings.py)")


@dataclass(frozen=True)
class ExecutorGroup:
    """The executors: how many, each one's capacity (sub-zone worker threads) and extra
    ``EDGESPLIT_EXECUTOR_*`` settings (fields of ``ExecutorSettings``), e.g. ``{"slice_delay_s": 3.0}``."""

    count: int = 2
    threads: int = 2
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a stack needs at least 1 executor, got {self.count}")
        _check_extra("executor", self.extra)


@dataclass(frozen=True)
class CloudGroup:
    """The cloud service: its torch threads and extra ``EDGESPLIT_CLOUD_*`` settings."""

    threads: int = 2
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_extra("cloud", self.extra)


@dataclass(frozen=True)
class OrchestratorGroup:
    """The orchestrator: serving mode, pipeline, port (None: a free one) and extra
    ``EDGESPLIT_ORCHESTRATOR_*`` settings, e.g. ``{"aging_s": 0.5}``."""

    mode: str = "split"
    pipeline: str = "async"
    port: int | None = None
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_extra("orchestrator", self.extra)


@dataclass(frozen=True)
class AllocatorGroup:
    """The allocator service (measured re-planning, plans published in Redis): whether to run it and its
    extra ``EDGESPLIT_ALLOCATOR_*`` settings."""

    enabled: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_extra("allocator", self.extra)


@dataclass(frozen=True)
class RedisGroup:
    """Where the stack keeps its state: the Redis url (a durable redis-server is started there when
    nothing answers, with ``fsync`` and ``maxmemory``, its files in ``state_dir``), the key prefix (None:
    a fresh one) and whether ``stop`` keeps the keys."""

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str | None = None
    keep_keys: bool = False
    state_dir: Path | None = None
    fsync: str = "everysec"
    maxmemory: str = "256mb"


@dataclass(frozen=True)
class StackTokens:
    """One internal bearer token per caller (each callee refuses the others): orchestrator -> executors
    (``internal``), allocator -> executors, orchestrator -> cloud, and the allocator's admin token."""

    internal: str = field(default_factory=lambda: secrets.token_hex(16))
    allocator: str = field(default_factory=lambda: secrets.token_hex(16))
    cloud: str = field(default_factory=lambda: secrets.token_hex(16))
    admin: str = field(default_factory=lambda: secrets.token_hex(16))


@dataclass(frozen=True)
class StackSettings:
    """Everything a :class:`LocalStack` runs with, grouped by role.

    ``models``, ``split`` (the planner family) and ``seed`` are the stack's; ``weights_dir``:
    ``<model>.safetensors`` files for every service (None: an empty folder, so seeded weights for all);
    logs go to ``log_dir``, or to a temporary folder deleted by ``stop`` unless ``keep_logs``;
    ``supervise`` restarts a process that died (module docstring). ``shared_host`` (default): the
    cluster file says that the executors share this machine's cores (``host: localhost``, ``hosts:
    {localhost: {cores: N}}``, N = the CPUs this process may use), so the planner does not count on
    executors running side by side faster than the machine can (``edgesplit.plan.latency.host_slowdown``).
    False describes them as separate machines, as in a cluster of nodes: plans then spread work over them.
    """

    models: tuple[str, ...] = ("alexnet-paper",)
    split: str = "edgesplit"
    seed: int = 0
    executor: ExecutorGroup = field(default_factory=ExecutorGroup)
    cloud: CloudGroup = field(default_factory=CloudGroup)
    orchestrator: OrchestratorGroup = field(default_factory=OrchestratorGroup)
    allocator: AllocatorGroup = field(default_factory=AllocatorGroup)
    redis: RedisGroup = field(default_factory=RedisGroup)
    tokens: StackTokens = field(default_factory=StackTokens)
    weights_dir: Path | None = None
    log_dir: Path | None = None
    keep_logs: bool = False
    shared_host: bool = True
    supervise: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))


class LocalStack:
    """A whole edgesplit deployment on this machine (module docstring), run with ``settings``
    (:class:`StackSettings`; None: the defaults).

    ``extra_exec``, ``extra_orch`` and ``extra_alloc`` start as the groups' ``extra`` settings and may
    be changed before a process is (re)started (``restart_orchestrator`` adds to ``extra_orch``).
    """

    def __init__(self, settings: StackSettings | None = None) -> None:
        cfg = self.settings = settings or StackSettings()
        self.n_executors = cfg.executor.count
        self.models = list(cfg.models)
        self.mode, self.pipeline, self.split = cfg.orchestrator.mode, cfg.orchestrator.pipeline, cfg.split
        self.threads, self.seed = cfg.executor.threads, cfg.seed
        self.redis_url = cfg.redis.url
        self.prefix = cfg.redis.prefix or f"es-{uuid.uuid4().hex[:8]}:"
        self.extra_orch = dict(cfg.orchestrator.extra)
        self.extra_exec = dict(cfg.executor.extra)
        self.extra_cloud = dict(cfg.cloud.extra)
        self.extra_alloc = dict(cfg.allocator.extra)
        self._own_dir = cfg.log_dir is None and not cfg.keep_logs
        self.log_dir = cfg.log_dir or Path(tempfile.mkdtemp(prefix="edgesplit-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.token, self.allocator_token = cfg.tokens.internal, cfg.tokens.allocator
        self.cloud_token, self.admin_token = cfg.tokens.cloud, cfg.tokens.admin
        self.orch_port = cfg.orchestrator.port or free_port()
        self.exec_ports = [free_port() for _ in range(self.n_executors)]
        self.cloud_port = free_port()
        self.keep_keys = cfg.redis.keep_keys
        self.weights_dir = cfg.weights_dir if cfg.weights_dir is not None else self.log_dir / "weights"
        self.cloud_threads = cfg.cloud.threads
        self.with_allocator = cfg.allocator.enabled
        self.alloc_port = free_port() if self.with_allocator else 0
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.executors: list[ServiceProcess | None] = [None] * self.n_executors
        self.cloud: ServiceProcess | None = None
        self.orch: ServiceProcess | None = None
        self.allocator: ServiceProcess | None = None
        self.cluster_path = self.log_dir / "cluster.yaml"
        self.shared_host = cfg.shared_host
        self.state_dir = cfg.redis.state_dir if cfg.redis.state_dir is not None else self.log_dir / "redis"
        self.redis_fsync, self.redis_maxmemory = cfg.redis.fsync, cfg.redis.maxmemory
        self.supervise = cfg.supervise
        self.restarts: list[tuple[str, float]] = []  # (process name, time.time()) of each restart
        self.kept_tasks = 0  # tasks still queued or running when the stack stopped (their keys stay)
        self._lock = threading.RLock()  # the supervisor vs. deliberate stops, kills and restarts
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.orch_port}"

    def pids(self) -> dict[str, int]:
        """Process ids of the stack's running processes by name (redis only when this stack started
        it), e.g. for the CPU time each spends (``bench e2e``)."""
        return {name: svc.proc.pid for name, svc, _ in self._slots() if svc is not None and svc.alive}

    # --- processes ----------------------------------------------------------------------------------

    def _common(self, role: str, name: str, port: int) -> dict[str, object]:
        """What every role reads: address, name, models, seed, internal token."""
        return {"host": "127.0.0.1", "port": port, "name": name, "models": self.models, "model_files": "",
                "seed": self.seed, "token": self.token}

    def _model_service(self, role: str, name: str, port: int) -> dict[str, object]:
        """The executor's and the cloud's shared list (``edgesplit.env.modelService`` of the chart)."""
        return {**self._common(role, name, port), "weights_dir": self.weights_dir,
                **_defaults(role, "max_body_bytes")}

    def _settings(self, role: str, index: int) -> dict[str, object]:
        if role == "executor":
            if not 0 <= index < self.n_executors:
                raise ValueError(f"executor {index}: this stack has executors 0 to {self.n_executors - 1}")
            return {**self._model_service(role, f"executor-{index}", self.exec_ports[index]),
                    **_defaults(role, "slice_delay_s"), "allocator_token": self.allocator_token,
                    "threads": self.threads, **self.extra_exec}
        if role == "cloud":
            return {**self._model_service(role, "cloud", self.cloud_port), "token": self.cloud_token,
                    "threads": self.cloud_threads, **self.extra_cloud}
        if role == "orchestrator":
            return {**self._common(role, "orchestrator", self.orch_port), "redis_url": self.redis_url,
                    "prefix": self.prefix, "cluster_file": self.cluster_path, "weights_dir": self.weights_dir,
                    "mode": self.mode, "pipeline": self.pipeline, "split": self.split,
                    "cloud_token": self.cloud_token,
                    **_defaults(role, "aging_s", "max_queue", "max_priority", "max_batch",
                                "max_queue_delay_s", "max_batch_by_priority", "batch_chunk", "express_lane",
                                "urgent_window_s", "urgent_max_batch", "default_timeout_s",
                                "result_ttl_s", "lease_s", "max_finished", "drain_s", "max_body_bytes"),
                    **self.extra_orch}
        if role == "allocator":
            return {**self._common(role, "allocator", self.alloc_port), "redis_url": self.redis_url,
                    "prefix": self.prefix, "cluster_file": self.cluster_path, "split": self.split,
                    **_defaults(role, "policy", "period_s", "margin", "executor_selector",
                                "executor_container"),
                    "kubernetes": False, "namespace": "default", "executor_port": self.exec_ports[0],
                    "token": self.allocator_token, "admin_token": self.admin_token, **self.extra_alloc}
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")

    def role_env(self, role: str, index: int = 0) -> dict[str, str]:
        """The ``EDGESPLIT_<ROLE>_*`` variables this stack gives ``role`` (executor ``index``), without
        starting anything: the chart's list for that role plus the executor's ``THREADS`` and the extra
        settings given to the stack (unset values, e.g. no ``api_token``, are left out)."""
        prefix = f"EDGESPLIT_{role.upper()}_"
        return {f"{prefix}{k.upper()}": _env_value(v) for k, v in self._settings(role, index).items()
                if v is not None}

    def _start(self, role: str, index: int = 0) -> ServiceProcess:
        env = self.role_env(role, index)
        prefix = f"EDGESPLIT_{role.upper()}_"
        return spawn(env[f"{prefix}NAME"], [sys.executable, "-m", MODULES[role]], env,
                     int(env[f"{prefix}PORT"]), self.log_dir)

    def start_executor(self, i: int) -> ServiceProcess:
        """(Re)start executor i on its port (not waiting for it)."""
        with self._lock:
            svc = self._start("executor", i)
            self.executors[i] = svc
            return svc

    def start_orchestrator(self) -> ServiceProcess:
        with self._lock:
            self.orch = self._start("orchestrator")
            return self.orch

    def start_allocator(self) -> ServiceProcess:
        """(Re)start the allocator service (not waiting for it)."""
        with self._lock:
            self.allocator = self._start("allocator")
            return self.allocator

    def _ensure_redis(self) -> None:
        """Start a durable redis-server at ``redis_url`` (``redis_args``) unless something answers there."""
        if redis_answers(self.redis_url):
            return
        where = urlparse(self.redis_url)
        if where.hostname not in ("127.0.0.1", "localhost") or shutil.which("redis-server") is None:
            raise Unavailable(f"nothing answers at {self.redis_url} and no local redis-server can be started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / "redis.log").open("ab") as out:
            self.redis_proc = subprocess.Popen(
                redis_args(where.port or 6379, self.state_dir, self.redis_fsync, self.redis_maxmemory),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30  # replaying a long append-only file takes a while
        while not redis_answers(self.redis_url):
            if time.monotonic() > deadline or self.redis_proc.poll() is not None:
                raise Unavailable(f"redis-server did not start at {self.redis_url}; see "
                                  f"{self.log_dir}/redis.log")
            time.sleep(0.05)

    def kill_redis(self) -> None:
        """SIGKILL the redis-server this stack started (a crash, for the failure tests)."""
        with self._lock:
            if self.redis_proc is not None and self.redis_proc.poll() is None:
                self.redis_proc.kill()
                self.redis_proc.wait(10)

    def write_cluster(self) -> None:
        """The cluster description of this stack (executor urls and threads, the cloud's url, and the
        machine they share unless ``shared_host`` is False)."""
        host = {"host": HOST_NAME} if self.shared_host else {}
        raw: dict[str, Any] = {
            "executors": [{"name": f"executor-{i}", "url": f"http://127.0.0.1:{p}", "threads": self.threads,
                           "link_bps": LOOPBACK_LINK_BPS, "overhead_s": REQUEST_OVERHEAD_S, **host}
                          for i, p in enumerate(self.exec_ports)],
            "cloud": {"url": f"http://127.0.0.1:{self.cloud_port}", "link_bps": LOOPBACK_LINK_BPS,
                      "overhead_s": REQUEST_OVERHEAD_S},
            "models": self.models}
        if self.shared_host:
            raw["hosts"] = {HOST_NAME: {"cores": cpu_limit()}}
        dump_cluster(cluster_from_dict(raw), self.cluster_path)

    def start(self, timeout_s: float = 120.0) -> LocalStack:
        """Start everything and wait until all answer ready; on failure stop what started and raise."""
        try:
            self._ensure_redis()
            self.write_cluster()
            self.weights_dir.mkdir(parents=True, exist_ok=True)
            self.cloud = self._start("cloud")
            workers = [self.start_executor(i) for i in range(self.n_executors)]
            with ThreadPoolExecutor(len(workers) + 1) as pool:
                list(pool.map(lambda s: wait_ready(s, timeout_s=timeout_s), [self.cloud, *workers]))
            last = [self.start_orchestrator(), *([self.start_allocator()] if self.with_allocator else [])]
            with ThreadPoolExecutor(len(last)) as pool:
                list(pool.map(lambda s: wait_ready(s, timeout_s=timeout_s), last))
        except BaseException:
            self.stop()
            raise
        if self.supervise:
            self._supervisor = threading.Thread(target=self._supervise, name="stack-supervisor", daemon=True)
            self._supervisor.start()
        return self

    # --- supervision --------------------------------------------------------------------------------

    def _slots(self) -> list[tuple[str, Any, Any]]:
        """(name, the process now, how to start it again) for every process of the stack."""
        slots: list[tuple[str, Any, Any]] = [
            ("orchestrator", self.orch, self.start_orchestrator),
            ("cloud", self.cloud, lambda: setattr(self, "cloud", self._start("cloud")))]
        slots += [(f"executor-{i}", svc, lambda i=i: self.start_executor(i))
                  for i, svc in enumerate(self.executors)]
        if self.with_allocator:
            slots.append(("allocator", self.allocator, self.start_allocator))
        if self.redis_proc is not None:
            slots.append(("redis", self.redis_proc, self._ensure_redis))
        return slots

    def _supervise(self) -> None:
        """Restart each process that died, after its backoff (module docstring)."""
        dead_since: dict[str, float] = {}
        failures: dict[str, int] = {}
        started: dict[str, float] = {}
        while not self._stopping.wait(0.2):
            with self._lock:
                if self._stopping.is_set():
                    return
                if not self.supervise:  # paused (set back to True to resume)
                    continue
                for name, proc, restart in self._slots():
                    popen = getattr(proc, "proc", proc)
                    if popen is None or popen.poll() is None:
                        if popen is not None and time.monotonic() - started.get(name, 0.0) > HEALTHY_S:
                            failures[name] = 0
                        continue
                    now = time.monotonic()
                    since = dead_since.setdefault(name, now)
                    delay = BACKOFF_S[min(failures.get(name, 0), len(BACKOFF_S) - 1)]
                    if now - since < delay:
                        continue
                    log.warning("%s exited (status %s); restarting it", name, popen.returncode)
                    try:
                        restart()
                    except Exception as e:  # e.g. redis-server that would not start: next backoff
                        log.warning("cannot restart %s: %s", name, e)
                    failures[name] = failures.get(name, 0) + 1
                    started[name] = now
                    dead_since.pop(name, None)
                    self.restarts.append((name, time.time()))

    def kill_executor(self, i: int) -> None:
        """SIGKILL executor i (a crash, for the failure tests)."""
        with self._lock:
            svc = self.executors[i]
            if svc is not None and svc.alive:
                svc.proc.kill()
                svc.proc.wait(10)

    def kill_orchestrator(self) -> None:
        with self._lock:
            if self.orch is not None and self.orch.alive:
                self.orch.proc.kill()
                self.orch.proc.wait(10)

    def restart_orchestrator(self, kill: bool = False, timeout_s: float = 120.0, **settings: object) -> None:
        """Stop the orchestrator (SIGTERM, or SIGKILL with ``kill``) and start it again, with
        ``settings`` added to its extra settings; waits until it is ready."""
        with self._lock:
            if kill:
                self.kill_orchestrator()
            elif self.orch is not None:
                self.orch.stop(self._drain_timeout())
            self.extra_orch.update(settings)
            svc = self.start_orchestrator()
        wait_ready(svc, timeout_s=timeout_s)

    def _drain_timeout(self) -> float:
        """How long the orchestrator may take to stop: its drain, plus 15 s for uvicorn and the rest."""
        drain = self.extra_orch.get("drain_s", _defaults("orchestrator", "drain_s")["drain_s"])
        return float(str(drain)) + 15.0

    def holds_tasks(self) -> int:
        """Tasks queued or running under this stack's prefix (0 when Redis does not answer)."""
        with contextlib.suppress(redis.RedisError, OSError):
            client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            return sum(int(client.zcard(k)) for pattern in ("q:*", "inflight:*")
                       for k in client.scan_iter(match=f"{self.prefix}{pattern}", count=500))
        return 0

    def services(self) -> list[ServiceProcess]:
        return [s for s in (self.orch, self.allocator, *self.executors, self.cloud) if s is not None]

    def stop(self) -> None:
        """Stop every process (orchestrator first: it drains, then gives back what is left), then delete
        the Redis keys unless ``keep_keys`` or tasks are still queued or running under them."""
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(10)
        with self._lock:
            self._stop_all()

    def _stop_all(self) -> None:
        for svc in self.services():
            with contextlib.suppress(Exception):
                svc.stop(self._drain_timeout() if svc is self.orch else 10.0)
        held = self.kept_tasks = self.holds_tasks()
        if held:
            log.warning("%d task(s) still queued or running: keeping the keys under %s", held, self.prefix)
        if not self.keep_keys and not held:
            delete_keys(self.redis_url, self.prefix)
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis_proc.wait(10)
            self.redis_proc = None
        if self._own_dir:  # a temporary log folder made here goes with the stack
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
