"""Settings of the edge executor, read from ``EDGESPLIT_EXECUTOR_*`` variables."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings, cpu_limit


class ExecutorSettings(ServiceSettings):
    """All knobs of an executor (see :class:`ServiceSettings` for the shared ones).

    ``threads`` is the executor's resource capacity: quotas of all its sub-zones together may not
    exceed it. Unset, it follows the CPU limit the process sees (cgroup quota included), read again
    whenever it is needed, so an in-place resize of the pod's CPU changes it. ``slice_delay_s`` is
    fault injection: seconds added to every slice's compute (a slow server for the allocator's
    tests); 0 in production. ``halo_max``: a slice whose k worker bands would recompute more than
    this fraction of its FLOPs (halo) runs on one worker with k intra-op threads instead (None:
    always bands; in the environment ``none`` or an empty value). Default 0.1: on alexnet-paper's
    edge part, 2 bands of one slice recompute 28% more FLOPs and took 60.0 ms end to end against
    46-49 ms with 2 intra-op threads (docs/BENCHMARKS.md). ``queue_max``: slices that may wait for
    one sub-zone; beyond, a slice is refused with 503 and ``Retry-After`` (the orchestrator waits
    and sends it again, or re-plans).
    """

    model_config = SettingsConfigDict(env_prefix="EDGESPLIT_EXECUTOR_", extra="ignore")

    port: int = Field(8101, ge=1, le=65535)
    threads: int | None = Field(None, ge=1, le=1024)  # type: ignore[assignment]
    slice_delay_s: float = Field(0.0, ge=0.0, le=60.0)
    halo_max: float | None = Field(0.1, ge=0.0)
    queue_max: int = Field(64, ge=1)
    allocator_token: str | None = None  # the allocator's token; ``token`` is the orchestrator's

    @field_validator("allocator_token")
    @classmethod
    def _allocator_token(cls, value: str | None) -> str | None:
        return cls._strong_token(value)  # type: ignore[operator]

    @model_validator(mode="after")
    def _one_token_per_caller(self) -> ExecutorSettings:
        if self.allocator_token is not None and self.allocator_token == self.token:
            raise ValueError("allocator_token must differ from token (one token per caller)")
        return self

    @field_validator("halo_max", mode="before")
    @classmethod
    def _none_word(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "off"):
            return None
        return value

    def capacity(self) -> int:
        """Thread capacity now: ``threads`` when set, else the CPU limit visible at this moment."""
        return self.threads if self.threads is not None else cpu_limit()
