"""Start services as real processes on free loopback ports, wait until ready, stop them.

Used by the integration tests (``tests/integration/conftest.py``) and by the benchmarks: the real
``python -m services.<name>`` (or any uvicorn app) with its settings in environment variables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]  # the checkout: tooling/proc.py is one level down


_RESERVED: dict[tuple[str, int], socket.socket] = {}  # ports picked here and still bound, by (host, port)
_RESERVED_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that the OS picked (bind to port 0) and that stays bound here until a
    service is started on it, so no other process can take it in between.

    :func:`spawn` hands the bound socket to the service as its stdin and the service listens on it
    (``services.common.listen``); until then connections to the port are refused (bound, not
    listening), so the port also serves as a port where nothing answers. Other programs started on
    the port (redis-server, uvicorn's own command) bind it again, which ``SO_REUSEADDR`` allows.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = int(sock.getsockname()[1])
    with _RESERVED_LOCK:
        _RESERVED[(host, port)] = sock
    return port


def _take_reserved(port: int, host: str = "127.0.0.1") -> socket.socket | None:
    with _RESERVED_LOCK:
        return _RESERVED.pop((host, port), None)


@dataclass
class ServiceProcess:
    """A running service: its URL, process and log file (stdout and stderr together)."""

    name: str
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL after ``timeout_s`` seconds."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)


def wait_ready(svc: ServiceProcess, path: str = "/v2/health/ready", timeout_s: float = 90.0) -> None:
    """Poll ``path`` until it answers 200; RuntimeError (with the log) if the process dies or times out."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not svc.alive:
                raise RuntimeError(f"{svc.name} exited with status {svc.proc.returncode}:\n{svc.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(svc.url + path).status_code == 200:
                    return
            time.sleep(0.1)
    svc.stop()
    raise RuntimeError(f"{svc.name} was not ready at {svc.url}{path} within {timeout_s} s:\n{svc.log_tail()}")


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], port: int,
          log_dir: Path | None = None) -> ServiceProcess:
    """Start ``argv`` with ``env`` added to this process's environment; do not wait. A ``port`` from
    :func:`free_port` goes to the process as its bound socket on stdin (``services.common.listen``).

    The process gets a process group of its own (a terminal's Ctrl-C reaches the launcher, which stops
    it in order) but stays in the launcher's session: with the kernel's autogroup scheduling each
    session is one scheduling group weighed equally against the others whatever its threads' nice
    values, so services in sessions of their own would share the cores evenly and the bulk lanes'
    ``bulk_nice`` (``services.common.compute``) would not yield to another service's urgent lane."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="edgesplit-"))
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    reserved = _take_reserved(port)  # picked by free_port: the service gets the bound socket as stdin
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(list(argv), env=full_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=None if reserved is None else reserved.fileno(),
                                    process_group=0)
    finally:
        if reserved is not None:
            reserved.close()  # the child holds it now
    return ServiceProcess(name, f"http://127.0.0.1:{port}", port, proc, log_path)


def start_module(name: str, module: str, env_prefix: str, settings: Mapping[str, object],
                 log_dir: Path | None = None, timeout_s: float = 90.0, wait: bool = True) -> ServiceProcess:
    """``python -m module`` with ``{env_prefix}{KEY}`` = value for each setting, on a free port."""
    port = free_port()
    env = {f"{env_prefix}{k.upper()}": str(v) for k, v in settings.items()}
    env[f"{env_prefix}PORT"] = str(port)
    env.setdefault(f"{env_prefix}HOST", "127.0.0.1")
    env.setdefault(f"{env_prefix}NAME", name)
    svc = spawn(name, [sys.executable, "-m", module], env, port, log_dir)
    if wait:
        wait_ready(svc, timeout_s=timeout_s)
    return svc


def start_executor(name: str, log_dir: Path | None = None, wait: bool = True,
                   **settings: object) -> ServiceProcess:
    """A real executor process (``python -m services.executor``); settings as ``EDGESPLIT_EXECUTOR_*``."""
    return start_module(name, "services.executor", "EDGESPLIT_EXECUTOR_", settings, log_dir, wait=wait)


def start_cloud(name: str, log_dir: Path | None = None, wait: bool = True,
                **settings: object) -> ServiceProcess:
    """A real cloud process (``python -m services.cloud``); settings as ``EDGESPLIT_CLOUD_*``."""
    return start_module(name, "services.cloud", "EDGESPLIT_CLOUD_", settings, log_dir, wait=wait)


def start_echo(log_dir: Path | None = None) -> ServiceProcess:
    """The bare FastAPI echo app under uvicorn (the RPC benchmark's baseline)."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "tooling.echo:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    svc = spawn("echo", argv, {}, port, log_dir)
    wait_ready(svc)
    return svc


class Spawner:
    """Starts services (e.g. for one test) and stops them all in :meth:`stop_all`."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir
        self.started: list[ServiceProcess] = []

    def executor(self, name: str, wait: bool = True, **settings: object) -> ServiceProcess:
        svc = start_executor(name, self.log_dir, wait=wait, **settings)
        self.started.append(svc)
        return svc

    def cloud(self, name: str, wait: bool = True, **settings: object) -> ServiceProcess:
        svc = start_cloud(name, self.log_dir, wait=wait, **settings)
        self.started.append(svc)
        return svc

    def stop_all(self) -> None:
        for svc in self.started:
            svc.stop()


@contextlib.contextmanager
def running(*services: ServiceProcess) -> Iterator[tuple[ServiceProcess, ...]]:
    """Stop the services when the block ends, whatever happens."""
    try:
        yield services
    finally:
        for svc in services:
            svc.stop()
