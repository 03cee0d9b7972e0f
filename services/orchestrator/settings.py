"""Settings of the orchestrator (controller co1), read from ``EDGESPLIT_ORCHESTRATOR_*`` variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from edgesplit.plan.modes import SERVING_MODES
from edgesplit.type_aliases import PipelineMode, ServingModeName, Split
from services.common.channels import PREFIX_PATTERN
from services.common.settings import ServiceSettings

Mode = ServingModeName  # the names of plan.modes.SERVING_MODES
SplitKind = Split  # the names of plan.planner.PLANNER_FAMILIES


SERVED_MAX_BATCH = 16
"""``max_batch`` of every deployment (the chart's and compose's ``maxBatch``, ``edgesplit up``) and of
the benchmarks (``bench e2e``, ``bench sweep``): dynamic batching on. The settings class keeps 1 (off)
so that a bare orchestrator claims one task at a time. With ``urgent_max_batch`` the batches beside
urgent traffic are smaller (docs/BENCHMARKS.md, run 13)."""


class OrchestratorSettings(ServiceSettings):
    """All knobs of the orchestrator; validated at start-up, unsafe values refused. Times in seconds.

    Shared with the other services (``ServiceSettings``): host, port, models, model_files,
    weights_dir, seed, token (the internal bearer token sent to executors and the cloud),
    max_body_bytes, threads (torch threads for merges), log_level.

    ``cluster_file``: the cluster description (executor and cloud urls, threads). ``mode``: ``split``
    (the paper's pipeline), ``no-split`` (each task whole on one executor), ``dads`` (edge/cloud cut).
    ``split``: the planner (``edgesplit`` or the ``paper``'s); ``conv_groups``: one conv per stage
    (the paper's grouping, a sub-zone per conv) instead of the planner's fused groups.
    ``pipeline``: ``async`` (a stage starts when its input and its sub-zone are free) or
    ``lockstep`` (all stages advance together, the paper's fig. 2). ``aging_s`` = 0 keeps strict
    priorities; > 0 makes a waiting task gain one level per ``aging_s``. ``max_queue`` is per model.
    ``lease_s``: how long a claimed task stays ours without a renewal (a crashed orchestrator's tasks
    come back after it). ``api_token``: when set, clients must send it as a bearer token.
    ``cloud_concurrency``: cloud calls in flight at once, all models together; when more wait, the
    most urgent task's call goes first (``cloudgate.PriorityGate``); with the express lane, urgent
    calls may take ``cloud_urgent_reserve`` more (the cloud computes them on its urgent lane). Its
    default (None) is ``cloud_concurrency`` in ``no-split`` and ``dads``, 0 in ``split``: where the
    cloud runs whole tasks (DADS' cut), a batch's call holds a slot for hundreds of ms and priority-1
    p95 at 16 customers fell from 390-400 to 140-180 ms with the reserve; where it runs the FC layers
    only, a slot frees within tens of ms and two measurements disagreed on whether the reserve helps
    (docs/BENCHMARKS.md, run 11).

    Durability (docs/ARCHITECTURE.md, Guarantees): ``result_ttl_s`` and ``max_finished`` bound how
    long and how many finished tasks Redis keeps (the oldest beyond ``max_finished`` are deleted).
    ``redis_outage_s``: how long a finished task's acknowledgement is retried while Redis is away
    (after that, its lease brings it back and it runs again). ``drain_s``: on SIGTERM, how long the
    tasks in flight may run to the end (nothing new is claimed) before the rest go back to the queue.
    ``breaker_failures`` failures of one executor within ``breaker_window_s`` open its circuit (no
    slices for it); after ``breaker_open_s`` one probe slice or ready probe may close it again.
    ``overload_wait_s``: the longest an executor's ``Retry-After`` (its sub-zone queue full) is waited
    for before the slice goes to another executor instead.
    """

    model_config = SettingsConfigDict(env_prefix="EDGESPLIT_ORCHESTRATOR_", extra="ignore")

    port: int = Field(8080, ge=1, le=65535)
    threads: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=2**31)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str | None = None  # Redis AUTH; from a Secret, never in the URL
    prefix: str = Field("es:", pattern=PREFIX_PATTERN)  # services.common.channels
    cluster_file: Path | None = None
    mode: Mode = "split"
    pipeline: PipelineMode = "async"
    split: SplitKind = "edgesplit"
    conv_groups: bool = False
    aging_s: float = Field(0.0, ge=0.0)
    max_queue: int = Field(1000, ge=1)
    max_priority: int = Field(10, ge=1, le=1000)
    default_timeout_s: float = Field(60.0, gt=0.0)
    max_timeout_s: float = Field(3600.0, gt=0.0)
    result_ttl_s: int = Field(3600, ge=1)
    lease_s: float = Field(10.0, gt=0.0)
    reap_interval_s: float = Field(0.25, gt=0.0)
    slice_timeout_s: float = Field(10.0, gt=0.0)
    probe_interval_s: float = Field(0.5, gt=0.0)
    max_claims: int = Field(5, ge=1)
    max_retries: int = Field(3, ge=0)
    cloud_concurrency: int = Field(4, ge=1)
    cloud_urgent_reserve: int | None = Field(None, ge=0, le=64)
    api_token: str | None = None
    grpc_port: int | None = Field(None, ge=1, le=65535)  # the V2 gRPC service (v2grpc.py); None: off
    cloud_token: str | None = None  # sent to the cloud; unset: ``token`` (one token per caller is better)
    metrics: bool = True  # serve the open /metrics (Prometheus); false: 404
    open_api: bool = False  # allow a public API without api_token on a non-loopback address
    workers: bool = True
    max_finished: int = Field(20_000, ge=1)
    redis_outage_s: float = Field(60.0, ge=0.0)
    drain_s: float = Field(15.0, ge=0.0)
    breaker_failures: int = Field(3, ge=1)
    breaker_window_s: float = Field(10.0, gt=0.0)
    breaker_open_s: float = Field(2.0, gt=0.0)
    overload_wait_s: float = Field(1.0, ge=0.0)
    # uploads (services.orchestrator.decode): declared image size, decode threads and their queue
    image_max_scale: int = Field(8, ge=1, le=64)
    image_min_side: int = Field(1024, ge=16, le=16384)
    decode_workers: int = Field(2, ge=1, le=64)
    decode_queue: int = Field(64, ge=0, le=100_000)
    decode_wait_s: float = Field(5.0, gt=0.0, le=600.0)
    # per-client rate limit (services.orchestrator.ratelimit): requests per second and burst; 0 = off
    rate_per_s: float = Field(200.0, ge=0.0)
    rate_burst: int = Field(400, ge=1)
    # dynamic batching (services.orchestrator.batching): up to max_batch tasks of one model run as one
    # unit (1 = off); a partial batch may wait for more at most max_queue_delay_s of its tasks'
    # priorities (priority -> seconds; a priority not listed takes the largest listed one below it),
    # counted from the submit: 0 for priority 1, so an urgent task never waits to fill a batch;
    # max_batch_by_priority caps a batch by its most urgent task's priority (the same lookup): 1 for
    # priority 1, so no less urgent task pads an urgent one's batch
    max_batch: int = Field(1, ge=1, le=256)  # the deployments set SERVED_MAX_BATCH
    max_queue_delay_s: dict[int, float] = Field(default_factory=lambda: {1: 0.0, 2: 0.002})
    max_batch_by_priority: dict[int, int] = Field(default_factory=lambda: {1: 1, 2: 256})
    # while urgent (priority-1) tasks come (one claimed within urgent_window_s), the async pipeline's
    # first step of a batch runs batch_chunk rows at a time (0: all at once) and urgent tasks queued
    # meanwhile go through between two chunks; otherwise a batch's step runs whole (faster)
    batch_chunk: int = Field(1, ge=0, le=256)
    urgent_window_s: float = Field(10.0, ge=0.0, le=3600.0)
    # and then a batch holds at most urgent_max_batch tasks (0: max_batch): smaller batches beside the
    # urgent tasks, whole max_batch ones for bulk traffic alone
    urgent_max_batch: int = Field(4, ge=0, le=256)
    # with batching, the express lane (services.orchestrator.runner) runs priority-1 tasks whole beside
    # the pipeline (split) or the batches (no-split, dads), on the services' urgent lanes; then the
    # async pipeline's batches are not chunked
    express_lane: bool = True

    @field_validator("api_token", "cloud_token")
    @classmethod
    def _api_token(cls, value: str | None) -> str | None:
        return cls._strong_token(value)  # type: ignore[operator]

    @model_validator(mode="after")
    def _check_times(self) -> OrchestratorSettings:
        loopback = self.host in ("127.0.0.1", "localhost", "::1")
        if self.api_token is None and not self.open_api and not loopback:
            raise ValueError(f"api_token is required to listen on {self.host} (closed by default); set one, "
                             "or open_api=true to serve an open API on purpose")
        if self.cluster_file is not None and not self.cluster_file.is_file():
            raise ValueError(f"cluster_file {self.cluster_file} does not exist")
        if self.lease_s <= 2 * self.reap_interval_s:
            raise ValueError(f"lease_s ({self.lease_s}) must exceed twice reap_interval_s "
                             f"({self.reap_interval_s})")
        if self.default_timeout_s > self.max_timeout_s:
            raise ValueError("default_timeout_s must not exceed max_timeout_s")
        if not self.max_queue_delay_s or any(p < 1 or not 0.0 <= d <= 60.0
                                             for p, d in self.max_queue_delay_s.items()):
            raise ValueError(f"max_queue_delay_s {self.max_queue_delay_s}: expected priorities >= 1 mapped "
                             "to 0 to 60 seconds, at least one")
        if not self.max_batch_by_priority or any(p < 1 or not 1 <= b <= 256
                                                 for p, b in self.max_batch_by_priority.items()):
            raise ValueError(f"max_batch_by_priority {self.max_batch_by_priority}: expected priorities >= 1 "
                             "mapped to 1 to 256 tasks, at least one")
        return self

    def express(self) -> bool:
        """Whether priority-1 tasks take the express lane: ``express_lane`` with batching
        (``max_batch`` > 1); a runner without one ignores it (``Runner.express_on``)."""
        return self.max_batch > 1 and self.express_lane

    def urgent_reserve(self) -> int:
        """The cloud gate's slots for urgent calls beyond ``cloud_concurrency`` (class docstring): none
        without the express lane."""
        if not self.express():
            return 0
        if self.cloud_urgent_reserve is not None:
            return self.cloud_urgent_reserve
        return 0 if SERVING_MODES[self.mode].planned else self.cloud_concurrency
