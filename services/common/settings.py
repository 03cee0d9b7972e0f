"""What every edgesplit service's settings share, and the CPU limit a process can see.

Each service subclasses :class:`ServiceSettings` with its own env prefix (``EDGESPLIT_EXECUTOR_``,
``EDGESPLIT_CLOUD_``). Values are validated at start-up and unsafe ones are refused.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from edgesplit.errors import EdgesplitError
from edgesplit.models import builtin_names, load_spec_file

log = logging.getLogger("edgesplit.services")

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
_WEAK_TOKENS = {"changethis", "changeme", "secret", "token", "password"}
# tokens that were shipped in this repository (docker-compose.yml defaults, k8s/base): public knowledge
KNOWN_TOKENS = {"compose-internal-token-0123456789", "compose-admin-token-0123456789",
                "kind-local-only-internal-token", "kind-local-only-admin-token"}
_WEAK_WORDS = ("changeme", "changethis", "example", "placeholder", "password", "secret-token")
MIN_TOKEN_CHARS = 16
MIN_TOKEN_DISTINCT = 8  # "aaaaaaaaaaaaaaaa" and "0101010101010101" are long but guessable


def _cgroup_quota(root: Path, v1: Path) -> float | None:
    """CPUs allowed by one cgroup's quota: v2 ``root`` (a ``cpu.max`` file), else the v1 folder ``v1``
    (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None when unlimited or unreadable."""
    try:
        quota, period = root.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
        period_us = int((v1 / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def _ancestry(path: str) -> list[str]:
    """``"/a/b"`` -> ``["a/b", "a", ""]``: a cgroup path and its ancestors, innermost first."""
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[:n]) for n in range(len(parts), -1, -1)]


def own_cgroups(proc_cgroup: Path = PROC_CGROUP, mount: Path = CGROUP_ROOT) -> list[tuple[Path, Path]]:
    """(v2 ``cpu.max`` file, v1 ``cpu`` folder) of this process's cgroup and of each ancestor, innermost
    first, resolved from ``/proc/self/cgroup`` (v1: the line naming the ``cpu`` controller; v2: the
    ``0::`` line, under the mount or its ``unified`` folder in hybrid mode).

    In a pod the cgroup namespace makes the process's own cgroup the root (``/``), so this is just the
    mount's root; a process placed in a nested cgroup (a testbed host, ``systemd-run -p CPUQuota``)
    finds its own quota and its parents' (a parent's quota caps its children too).
    """
    v1_path = v2_path = "/"
    try:
        for line in proc_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                v2_path = path
            elif "cpu" in controllers.split(","):
                v1_path = path
    except (OSError, ValueError):
        pass
    v1_root = next((d for d in (mount / "cpu", mount / "cpu,cpuacct") if d.is_dir()), mount / "cpu")
    v2_root = mount / "unified" if (mount / "unified" / "cgroup.controllers").exists() else mount
    v1 = [v1_root / rel for rel in _ancestry(v1_path)]
    v2 = [v2_root / rel / "cpu.max" for rel in _ancestry(v2_path)]
    depth = max(len(v1), len(v2))
    missing_v1, missing_v2 = mount / "-none-", mount / "-none-" / "cpu.max"
    return [(v2[i] if i < len(v2) else missing_v2, v1[i] if i < len(v1) else missing_v1)
            for i in range(depth)]


def cpu_quota() -> float | None:
    """CPUs this process's cgroup quota allows (the tightest of its cgroup and their ancestors; a
    fraction below 1 where the quota is less than a core); None when nothing limits it."""
    quotas = [q for q in (_cgroup_quota(v2, v1) for v2, v1 in own_cgroups()) if q is not None]
    return min(quotas) if quotas else None


def cpu_limit() -> int:
    """Whole CPUs this process may use: min of the cgroup quota (floored, at least 1) and its affinity.

    A quota below one core still gives one thread, running at ``cpu_quota()`` of a core's speed.
    """
    visible = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota()
    return visible if quota is None else max(1, min(visible, math.floor(quota)))


def check_token(value: str) -> str:
    """``value`` when it is fit to be a bearer token; ValueError for a short, repetitive, placeholder
    or published one (the services refuse to start with it)."""
    low = value.lower()
    if len(value) < MIN_TOKEN_CHARS or len(set(value)) < MIN_TOKEN_DISTINCT:
        raise ValueError(f"token must be at least {MIN_TOKEN_CHARS} characters with at least "
                         f"{MIN_TOKEN_DISTINCT} different ones (e.g. `openssl rand -hex 24`)")
    if low in _WEAK_TOKENS or value in KNOWN_TOKENS or any(w in low for w in _WEAK_WORDS):
        raise ValueError("token is a placeholder or a token published with edgesplit; generate one "
                         "(e.g. `openssl rand -hex 24`)")
    if not all(33 <= ord(ch) <= 126 for ch in value):
        raise ValueError("token must be printable ASCII without spaces (it travels in a header)")
    return value


class ServiceSettings(BaseSettings):
    """Settings common to the executor and the cloud service (sizes in bytes, times in seconds).

    ``models``: built-in model names (env: a comma list); ``model_files``: extra spec JSON files;
    ``weights_dir``: a folder of ``<model>.safetensors`` (a model without a file there, or every model
    when unset, gets seeded weights from ``seed``: every process builds the same weights);
    ``threads``: thread capacity, default the CPU limit the process sees (cgroup quota included).
    ``urgent_priority``: requests whose ``?priority=`` is at most this (1 = the most urgent class) run
    on the service's urgent lane, beside the bulk work rather than behind it (0: no urgent lane);
    ``bulk_nice``: the niceness of the bulk lane's compute threads (``services.common.compute``);
    ``bulk_idle``: they also run under ``SCHED_IDLE`` (Linux), so any thread at the normal policy (an
    urgent lane, an event loop, another service's) takes a core from them at once;
    ``urgent_nice``: the niceness of the urgent lane's compute thread (and its OpenMP team); below 0
    it needs CAP_SYS_NICE (root, or a pod granted it), and without it the lane runs at 0;
    ``urgent_pause_s``: while an urgent call computes on the urgent lane, the bulk threads wait at
    their next pause point (between two layers) for it to end, at most this long each time
    (``services.common.compute.UrgentGate``; 0: they never wait).
    """

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    models: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["alexnet-paper", "digits-cnn"])
    model_files: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    weights_dir: Path | None = None
    seed: int = Field(0, ge=0, le=2**63 - 1)
    token: str | None = None
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=2**31)
    threads: int = Field(default_factory=cpu_limit, ge=1, le=1024)
    log_level: str = Field("info", pattern="^(critical|error|warning|info|debug)$")
    access_log: bool = False
    docs: bool = False  # serve /docs and /openapi.json (off: they map every endpoint to a caller)
    # HTTP limits (services.common.httpguard): slow or oversized requests are cut off, 408/414/431
    header_timeout_s: float = Field(4.0, gt=0.0, le=300.0)
    body_timeout_s: float = Field(4.0, gt=0.0, le=300.0)
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    max_headers: int = Field(64, ge=8, le=1000)
    # OpenTelemetry tracing (services.common.tracing): off unless an exporter is named
    trace_exporter: Literal["none", "console", "otlp"] = "none"
    trace_endpoint: str = "http://127.0.0.1:4318/v1/traces"  # OTLP over HTTP, with trace_exporter=otlp
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0)  # of the traces started here (parent-based)
    urgent_priority: int = Field(1, ge=0, le=1 << 20)
    bulk_nice: int = Field(10, ge=0, le=19)
    bulk_idle: bool = True
    urgent_nice: int = Field(-10, ge=-20, le=0)
    urgent_pause_s: float = Field(0.25, ge=0.0, le=10.0)

    def urgent(self, priority: int) -> bool:
        """Whether a request of ``priority`` runs on the urgent lane."""
        return self.urgent_priority > 0 and priority <= self.urgent_priority

    @field_validator("models", "model_files", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        return builtin_names(value)

    @field_validator("token")
    @classmethod
    def _strong_token(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return check_token(value)

    @model_validator(mode="after")
    def _check(self) -> ServiceSettings:
        if not self.models and not self.model_files:
            raise ValueError("models: deploy at least one model (models or model_files)")
        names = list(self.models)
        for path in self.model_files:
            try:
                names.append(load_spec_file(path).name)
            except EdgesplitError as e:
                raise ValueError(f"model_files: {e}") from e
        if len(set(names)) != len(names):
            raise ValueError(f"models: a model is deployed twice: {names}")
        if self.weights_dir is not None and not self.weights_dir.is_dir():
            raise ValueError(f"weights_dir {self.weights_dir} is not a directory")
        if self.token is None and self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("%s listens on %s without a token: every client on the network may call it",
                        self.name, self.host)
        return self
