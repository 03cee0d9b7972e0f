"""Settings of the allocator (controller co2), read from ``EDGESPLIT_ALLOCATOR_*`` variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from edgesplit.type_aliases import AllocPolicyName, Split
from services.common.channels import PREFIX_PATTERN
from services.common.settings import ServiceSettings

Policy = AllocPolicyName  # the names of edgesplit.alloc.registry.ALLOC_POLICIES
Objective = Literal["sum", "bottleneck"]
SplitKind = Split  # the names of edgesplit.plan.planner.PLANNER_FAMILIES
_LABEL = re.compile(r"^!?[A-Za-z0-9_./-]+((=|==|!=)[A-Za-z0-9_.-]*)?$")


class AllocatorSettings(ServiceSettings):
    """All knobs of the allocator; validated at start-up, unsafe values refused. Times in seconds.

    Shared (``ServiceSettings``): host, port, name, models (default: the cluster file's models),
    token (the internal bearer token: sent to the executors, required on this service's API),
    log_level.

    ``cluster_file``: the cluster description (executor urls, threads, cloud, links); required unless
    ``kubernetes`` is on. ``policy``: where sub-zone threads come from: ``td3`` (the shipped TD3 policy
    with measured speed and link rate in its observation, served only while it is within ``margin`` of
    the exact allocator for the measured conditions), ``exact`` or ``even``, or any other name of
    ``edgesplit.alloc.registry.ALLOC_POLICIES`` (``flops-share``, ``ddpg``). ``policy_file``: a TD3 policy
    to use instead of the shipped one. ``objective``: what allocations minimise, ``sum`` of stage
    latencies (eq. 6) or the ``bottleneck`` stage. ``split``: the planner's split (``edgesplit`` or
    ``paper``).

    ``period_s``: a re-plan at least this often; ``measure_s``: how often the executors are measured;
    a relative change above ``change_threshold`` in a server's measured speed or link rate, or an
    executor going down or coming back, re-plans at once. A re-plan replaces a plan that still runs
    only when its predicted objective is lower by more than ``min_gain`` (relative): measurement
    noise does not make plans flap. ``link_window``: transfer samples per server
    the link estimate uses. ``admin_token``: bearer token of ``POST /v1/replan`` (refused when unset).

    Kubernetes mode (``kubernetes``): executors are the pods of ``namespace`` (default: the pod's own)
    matching ``executor_selector``, reached on ``executor_port``; zone totals resize container
    ``executor_container`` in place through ``pods/resize``.
    """

    model_config = SettingsConfigDict(env_prefix="EDGESPLIT_ALLOCATOR_", extra="ignore")

    port: int = Field(8300, ge=1, le=65535)
    threads: int = Field(1, ge=1, le=64)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str | None = None  # Redis AUTH; from a Secret, never in the URL
    prefix: str = Field("es:", pattern=PREFIX_PATTERN)  # services.common.channels
    cluster_file: Path | None = None
    policy: Policy = "td3"
    policy_file: Path | None = None
    objective: Objective = "sum"
    split: SplitKind = "edgesplit"
    period_s: float = Field(5.0, gt=0.0, le=3600.0)
    measure_s: float | None = Field(None, gt=0.0, le=3600.0)
    margin: float = Field(0.05, ge=0.0, le=10.0)
    change_threshold: float = Field(0.2, gt=0.0, le=100.0)
    min_gain: float = Field(0.05, ge=0.0, lt=1.0)
    link_window: int = Field(64, ge=1, le=100_000)
    http_timeout_s: float = Field(2.0, gt=0.0, le=120.0)
    max_decisions: int = Field(500, ge=1, le=100_000)
    admin_token: str | None = None
    kubernetes: bool = False
    namespace: str | None = Field(None, min_length=1, max_length=63)
    executor_selector: str = "app.kubernetes.io/component=executor"
    executor_port: int = Field(8101, ge=1, le=65535)
    executor_container: str = Field("executor", min_length=1, max_length=63)
    default_executor_threads: int = Field(4, ge=1, le=1024)

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, value: str | None) -> str | None:
        return cls._strong_token(value)  # type: ignore[operator]

    @field_validator("executor_selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        terms = ["".join(t.split()) for t in value.split(",")]
        if not all(_LABEL.match(t) for t in terms):
            raise ValueError(f"executor_selector {value!r} is not a label selector such as "
                             "'app.kubernetes.io/component=executor'")
        return ",".join(terms)

    @model_validator(mode="after")
    def _check_allocator(self) -> AllocatorSettings:
        if self.measure_s is None:
            self.measure_s = min(1.0, self.period_s)
        if self.measure_s > self.period_s:
            raise ValueError(f"measure_s ({self.measure_s}) must not exceed period_s ({self.period_s})")
        if self.cluster_file is None and not self.kubernetes:
            raise ValueError("cluster_file: required unless kubernetes is on (executors are then discovered)")
        if self.cluster_file is not None and not self.cluster_file.is_file():
            raise ValueError(f"cluster_file {self.cluster_file} does not exist")
        if self.policy_file is not None and not self.policy_file.exists():
            raise ValueError(f"policy_file {self.policy_file} does not exist")
        if self.admin_token is not None and self.admin_token == self.token:
            raise ValueError("admin_token must differ from the internal token")
        return self

    @property
    def measure_interval_s(self) -> float:
        """Seconds between measurements (``measure_s``, defaulted at validation)."""
        return float(self.measure_s if self.measure_s is not None else self.period_s)
