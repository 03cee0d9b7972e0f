"""The local stack: redis-server (only if none answers), the cloud, M executors and the orchestrator as
processes on free loopback ports, with a cluster description written for them.

``LocalStack`` is a context manager reused by ``edgesplit up``, ``edgesplit demo``, the benchmarks and
the integration tests::

    with LocalStack(executors=2, models=("alexnet-paper",)) as stack:
        httpx.post(stack.url + "/v1/tasks", ...)

Every process logs to ``<log_dir>/<name>.log``. One random bearer token protects the internal calls
(orchestrator -> executors, cloud). A unique Redis key prefix per stack keeps stacks apart on a
shared Redis; ``stop`` deletes its keys unless ``keep_keys``.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from urllib.parse import urlparse

import redis

from edgesplit.errors import Unavailable
from edgesplit.plan.cluster import cluster_from_dict, dump_cluster
from services.common.proc import ServiceProcess, free_port, spawn, wait_ready

LOOPBACK_LINK_BPS = 10e9  # what the planner assumes of loopback links
REQUEST_OVERHEAD_S = 1e-3  # HTTP round trip + NPY encode/decode on loopback, measured order


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


class LocalStack:
    """A whole edgesplit deployment on this machine (module docstring).

    ``threads``: capacity (sub-zone worker threads) of each executor; ``cloud_threads``: torch threads
    of the cloud service; ``orchestrator``: extra
    orchestrator settings (``EDGESPLIT_ORCHESTRATOR_<KEY>``), e.g. ``{"aging_s": 0.5}``;
    ``executor``: extra executor settings. ``weights_dir``: ``<model>.safetensors`` files for every
    service (models without one use seeded weights). Logs go to ``log_dir``, or to a temporary folder
    deleted by ``stop`` unless ``keep_logs``.
    """

    def __init__(self, executors: int = 2, models: Sequence[str] = ("alexnet-paper",), mode: str = "split",
                 pipeline: str = "async", threads: int = 2, split: str = "edgesplit",
                 redis_url: str = "redis://127.0.0.1:6379/0", prefix: str | None = None,
                 orchestrator: Mapping[str, object] | None = None,
                 executor: Mapping[str, object] | None = None, log_dir: Path | None = None,
                 port: int | None = None, keep_keys: bool = False, seed: int = 0,
                 weights_dir: Path | None = None, keep_logs: bool = False, cloud_threads: int = 2) -> None:
        if executors < 1:
            raise ValueError(f"a stack needs at least 1 executor, got {executors}")
        self.n_executors = executors
        self.models = list(models)
        self.mode, self.pipeline, self.split, self.threads, self.seed = mode, pipeline, split, threads, seed
        self.redis_url = redis_url
        self.prefix = prefix or f"es-{uuid.uuid4().hex[:8]}:"
        self.extra_orch = dict(orchestrator or {})
        self.extra_exec = dict(executor or {})
        self._own_dir = log_dir is None and not keep_logs
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="edgesplit-stack-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.token = secrets.token_hex(16)
        self.orch_port = port or free_port()
        self.exec_ports = [free_port() for _ in range(executors)]
        self.cloud_port = free_port()
        self.keep_keys = keep_keys
        self.weights_dir = weights_dir
        self.cloud_threads = cloud_threads
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.executors: list[ServiceProcess | None] = [None] * executors
        self.cloud: ServiceProcess | None = None
        self.orch: ServiceProcess | None = None
        self.cluster_path = self.log_dir / "cluster.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.orch_port}"

    # --- processes ----------------------------------------------------------------------------------

    def _common(self) -> dict[str, object]:
        common: dict[str, object] = {"token": self.token, "models": ",".join(self.models), "seed": self.seed,
                                     "host": "127.0.0.1"}
        if self.weights_dir is not None:
            common["weights_dir"] = self.weights_dir
        return common

    def _start(self, name: str, module: str, prefix: str, port: int,
               settings: Mapping[str, object]) -> ServiceProcess:
        env = {f"{prefix}{k.upper()}": str(v) for k, v in settings.items()}
        env[f"{prefix}PORT"] = str(port)
        env.setdefault(f"{prefix}NAME", name)
        return spawn(name, [sys.executable, "-m", module], env, port, self.log_dir)

    def start_executor(self, i: int) -> ServiceProcess:
        """(Re)start executor i on its port (not waiting for it)."""
        svc = self._start(f"executor-{i}", "services.executor", "EDGESPLIT_EXECUTOR_", self.exec_ports[i],
                          {**self._common(), "threads": self.threads, **self.extra_exec})
        self.executors[i] = svc
        return svc

    def start_orchestrator(self) -> ServiceProcess:
        settings = {**self._common(), "redis_url": self.redis_url, "prefix": self.prefix,
                    "cluster_file": self.cluster_path, "mode": self.mode, "pipeline": self.pipeline,
                    "split": self.split, **self.extra_orch}
        self.orch = self._start("orchestrator", "services.orchestrator", "EDGESPLIT_ORCHESTRATOR_",
                                self.orch_port, settings)
        return self.orch

    def _ensure_redis(self) -> None:
        if redis_answers(self.redis_url):
            return
        where = urlparse(self.redis_url)
        if where.hostname not in ("127.0.0.1", "localhost") or shutil.which("redis-server") is None:
            raise Unavailable(f"nothing answers at {self.redis_url} and no local redis-server can be started")
        log = (self.log_dir / "redis.log").open("wb")
        self.redis_proc = subprocess.Popen(
            ["redis-server", "--port", str(where.port or 6379), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10
        while not redis_answers(self.redis_url):
            if time.monotonic() > deadline or self.redis_proc.poll() is not None:
                raise Unavailable(f"redis-server did not start at {self.redis_url}; see "
                                  f"{self.log_dir}/redis.log")
            time.sleep(0.05)

    def write_cluster(self) -> None:
        """The cluster description of this stack (executor urls and threads, the cloud's url)."""
        raw = {"executors": [{"name": f"executor-{i}", "url": f"http://127.0.0.1:{p}",
                              "threads": self.threads, "link_bps": LOOPBACK_LINK_BPS,
                              "overhead_s": REQUEST_OVERHEAD_S} for i, p in enumerate(self.exec_ports)],
               "cloud": {"url": f"http://127.0.0.1:{self.cloud_port}", "link_bps": LOOPBACK_LINK_BPS,
                         "overhead_s": REQUEST_OVERHEAD_S},
               "models": self.models}
        dump_cluster(cluster_from_dict(raw), self.cluster_path)

    def start(self, timeout_s: float = 120.0) -> LocalStack:
        """Start everything and wait until all answer ready; on failure stop what started and raise."""
        try:
            self._ensure_redis()
            self.write_cluster()
            self.cloud = self._start("cloud", "services.cloud", "EDGESPLIT_CLOUD_", self.cloud_port,
                                     {**self._common(), "threads": self.cloud_threads})
            workers = [self.start_executor(i) for i in range(self.n_executors)]
            with ThreadPoolExecutor(len(workers) + 1) as pool:
                list(pool.map(lambda s: wait_ready(s, timeout_s=timeout_s), [self.cloud, *workers]))
            wait_ready(self.start_orchestrator(), timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def kill_executor(self, i: int) -> None:
        """SIGKILL executor i (a crash, for the failure tests)."""
        svc = self.executors[i]
        if svc is not None and svc.alive:
            svc.proc.kill()
            svc.proc.wait(10)

    def kill_orchestrator(self) -> None:
        if self.orch is not None and self.orch.alive:
            self.orch.proc.kill()
            self.orch.proc.wait(10)

    def restart_orchestrator(self, kill: bool = False, timeout_s: float = 120.0, **settings: object) -> None:
        """Stop the orchestrator (SIGTERM, or SIGKILL with ``kill``) and start it again, with
        ``settings`` added to its extra settings; waits until it is ready."""
        if kill:
            self.kill_orchestrator()
        elif self.orch is not None:
            self.orch.stop()
        self.extra_orch.update(settings)
        wait_ready(self.start_orchestrator(), timeout_s=timeout_s)

    def services(self) -> list[ServiceProcess]:
        return [s for s in (self.orch, *self.executors, self.cloud) if s is not None]

    def stop(self) -> None:
        """Stop every process (orchestrator first, so it gives its tasks back), then clean Redis keys."""
        for svc in self.services():
            with contextlib.suppress(Exception):
                svc.stop()
        if not self.keep_keys:
            with contextlib.suppress(redis.RedisError, OSError):
                client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
                for key in client.scan_iter(match=f"{self.prefix}*", count=500):
                    client.delete(key)
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
