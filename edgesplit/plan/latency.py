"""The paper's latency model, eq. (1)-(5), with strategy-aware transfer sizes and per-request overhead.

Sizes are float32 tensors of batch 1 (a batch of B images: see *Batches* below). What a server
receives and returns per strategy:

* ``rows``: its input rows, halo included (map-edge padding is applied on the server, never
  shipped); it returns its own output rows.
* ``kernel-rows`` (paper section 3.3): its input rows ``[e, h-(b-l))``; it returns a full-size
  partial sum of the conv (bias, activation and pooling run at the controller after the add).
* ``channels``: the whole input (or its input channels for a group without conv); it returns its
  output channels.

A server's time in a stage is compute (eq. 1) + round trip (eq. 3) + its ``overhead_s`` (one request
per stage) + the stage's fan-out cost for its n requests where the cluster has one measured
(``Cluster.fanout``, the testbed's); servers sharing a host that is short of cores for them compute slower
(:func:`host_slowdown`); a stage takes the slowest server's time; a task takes the sum of its stages (eq. 5/6)
plus the edge-cloud transfer (eq. 4), the cloud's request overhead and the cloud compute (eq. 2).
Work at the controller (merges, kernel-rows' post layers) is neglected, as the paper does.

*Batches* (not in the paper; the orchestrator's dynamic batching): a batch of B tasks of one model runs
the pipeline as one unit, so each request carries B images: compute (eq. 1, 2) and transfers (eq. 3,
4) scale by B, while the per-request overheads (``overhead_s``, the cloud's, the CFS throttling wait
and the controller's) are paid once per batch. ``batch=1`` (the default everywhere) is the model above
unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import ModelSpec, Shape
from edgesplit.plan.cluster import Cloud, Cluster, Server
from edgesplit.split import Slice, Strategy, make_slices, slice_flops

BYTES_PER_VALUE = 4


def compute_time(flops: float, threads: float, flops_per_thread: float) -> float:
    """Computing time on edge server m, eq. (1): x * size / (k * eta), with ``flops`` = x * size. Seconds."""
    return flops / (threads * flops_per_thread)


def host_slowdown(servers: Sequence[Server], threads: Sequence[float],
                  active: Sequence[bool] | None = None) -> list[float]:
    """Factor (>= 1) on each server's compute time of eq. (1) when servers share a machine.

    The paper's servers are separate machines. Where several run on one host (``Server.host``), the
    active ones (those computing a part of this stage) run their threads at once on the host's
    ``host_cores``; when their threads add up to more than that, each thread gets
    ``host_cores / sum(threads)`` of a core, so each of them computes ``sum(threads) / host_cores``
    times slower. A server without a host, or not active, keeps factor 1.
    """
    on = [True] * len(servers) if active is None else list(active)
    demand: dict[str, float] = {}
    for srv, k, a in zip(servers, threads, on, strict=True):
        if a and srv.host is not None:
            demand[srv.host] = demand.get(srv.host, 0.0) + k
    return [max(1.0, demand[srv.host] / srv.host_cores) if a and srv.host is not None and srv.host_cores
            else 1.0 for srv, a in zip(servers, on, strict=True)]


THROTTLED_PHASES = 1  # period-boundary waits the slowest server of a stage pays (fitted, see below)


def throttle_delay(server: Server, in_stage: int) -> float:
    """Expected wait for CFS period boundaries of the slowest of ``in_stage`` servers of a stage, on a
    host whose quota is a fraction ``q`` of a core with period ``P`` (``host_period_s``). Seconds.

    Under a quota a host runs at full speed until the period's share is spent, then waits for the
    next period (up to ``(1 - q) P``). A slice's work outlasts the share, so it ends at a period
    boundary: a wait uniform in ``[0, (1 - q) P]``, whose maximum over the stage's n servers averages
    ``(1 - q) P n / (n + 1)`` (7 ms at 8 servers of 0.2 core, P = 10 ms). ``THROTTLED_PHASES`` such
    waits per stage: two (the compute, then the reply, which needs CPU too) over-predicted the
    paper's 5-stage plan on the testbed by 16-35%, one by 2-15% (docs/BENCHMARKS.md, testbed). Not in
    the paper, whose servers have no quota; 0 for a host without a period or with a core or more.
    """
    if not server.host_period_s or server.host_cores is None or server.host_cores >= 1.0:
        return 0.0
    n = max(1, in_stage)
    return THROTTLED_PHASES * (1.0 - server.host_cores) * server.host_period_s * n / (n + 1)


def cloud_compute_time(size_full: float, cloud_flops: float) -> float:
    """Computing time of the fully connected layers on the cloud, eq. (2): size_full / k_c. Seconds."""
    return size_full / cloud_flops


def cloud_part_time(spec: ModelSpec, first: int, cloud: Cloud) -> float:
    """Eq. (2) for layers ``first`` onwards in the cloud (a DADS cut), each at the cloud's rate for its
    kind of layer (``Cloud.layer_rate``). Seconds."""
    flops = spec.layer_flops()
    return sum(cloud_compute_time(flops[i], cloud.layer_rate(spec.layers[i]))
               for i in range(first, len(flops)))


def round_trip_time(out_bytes: float, merged_bytes: float, link_bps: float) -> float:
    """Round trip between co1 and server m, eq. (3): (o_out + o_merged) / ra_m. Bytes in, seconds out.

    ``merged_bytes`` is what co1 sends the server (the merged map of the previous stage, cropped to
    what this server needs); ``out_bytes`` what the server returns.
    """
    return 8.0 * (out_bytes + merged_bytes) / link_bps


def cloud_transfer_time(out_bytes: float, link_bps: float) -> float:
    """Edge-to-cloud transfer, eq. (4): o_c / ra_c. Bytes in, seconds out."""
    return 8.0 * out_bytes / link_bps


def map_bytes(shape: Sequence[int]) -> int:
    """Size of a float32 map of the given shape (batch 1), bytes."""
    return BYTES_PER_VALUE * math.prod(shape)


class SliceLoad(NamedTuple):
    """Work of one slice: FLOPs computed on the server, bytes received and returned."""

    flops: float
    in_bytes: int
    out_bytes: int


def _slice_bytes(sl: Slice, shapes: Sequence[Shape]) -> tuple[int, int]:
    """Bytes a slice receives and returns (what ``Slice.in_shape``/``out_shape`` give, batch 1),
    from precomputed shapes: ``ModelSpec.shapes()`` is recomputed on every call."""
    c_in, _, w_in = shapes[sl.start]
    if sl.in_channels is not None:
        c_in = sl.in_channels[1] - sl.in_channels[0]
    in_bytes = BYTES_PER_VALUE * c_in * (sl.in_rows[1] - sl.in_rows[0]) * w_in
    return in_bytes, map_bytes(sl.how.out_shape(sl, shapes, 1))


def slice_load(spec: ModelSpec, sl: Slice, flops: Sequence[float] | None = None,
               shapes: Sequence[Shape] | None = None) -> SliceLoad:
    """FLOPs, input and output bytes of one slice. The FLOPs are ``split.slice_flops``, the one count
    the executors use too: a rows slice counts its halo recomputation (each layer over the rows it
    actually computes, ``group_needs``)."""
    if sl.empty:
        return SliceLoad(0.0, 0, 0)
    per_layer = spec.layer_flops() if flops is None else flops
    shapes = spec.shapes() if shapes is None else shapes
    in_bytes, out_bytes = _slice_bytes(sl, shapes)
    return SliceLoad(slice_flops(spec, sl, 1, per_layer, shapes), in_bytes, out_bytes)


class StageLike(Protocol):
    """What the latency model needs of a stage (``planner.StagePlan`` is one)."""

    @property
    def start(self) -> int: ...
    @property
    def stop(self) -> int: ...
    @property
    def strategy(self) -> Strategy: ...
    @property
    def servers(self) -> tuple[int, ...]: ...
    @property
    def parts(self) -> tuple[int, ...]: ...
    @property
    def threads(self) -> tuple[int, ...]: ...


class ServerTime(NamedTuple):
    """One server's share of a stage, seconds (compute eq. 1, round trip eq. 3, request overhead)."""

    server: int
    compute_s: float
    transfer_s: float
    overhead_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.transfer_s + self.overhead_s


class StageLatency(NamedTuple):
    """A stage's time (its slowest server's), split into compute, transfer and overhead. Seconds."""

    compute_s: float
    transfer_s: float
    overhead_s: float
    total_s: float
    server: int


def server_times(spec: ModelSpec, cluster: Cluster, stage: StageLike,
                 flops: Sequence[float] | None = None, batch: int = 1) -> list[ServerTime]:
    """Per-server times of one stage for a request of ``batch`` images (module docstring, *Batches*:
    compute and round trip x batch, overhead once); servers with an empty part send no request and
    take 0 s. With the model's slice profile in the cluster, a slice's compute time is eq. (1) times
    its measured efficiency factor (``edgesplit.profiles``)."""
    slices = make_slices(spec, stage.start, stage.stop, stage.strategy, stage.parts)
    shapes = spec.shapes()
    servers = [cluster.servers[m] for m in stage.servers]
    slowdown = host_slowdown(servers, stage.threads, [not sl.empty for sl in slices])
    in_stage = sum(1 for sl in slices if not sl.empty)
    profile = cluster.profile(spec.name)
    out = []
    for m, srv, k, sl, slow, n in zip(stage.servers, servers, stage.threads, slices, slowdown, stage.parts,
                                      strict=True):
        load = slice_load(spec, sl, flops, shapes)
        if sl.empty:
            out.append(ServerTime(m, 0.0, 0.0, 0.0))
            continue
        if profile is not None:  # measured slice efficiency (edgesplit.profiles)
            slow *= profile.factor(stage.start, stage.stop, stage.strategy, n)
        out.append(ServerTime(m, slow * compute_time(batch * load.flops, k, srv.flops_per_thread),
                              round_trip_time(batch * load.out_bytes, batch * load.in_bytes, srv.link_bps),
                              srv.overhead_s + throttle_delay(srv, in_stage) + cluster.fanout(in_stage)))
    return out


def stage_latency(spec: ModelSpec, cluster: Cluster, stage: StageLike,
                  flops: Sequence[float] | None = None, batch: int = 1) -> StageLatency:
    """The stage's time: max over its servers of compute + round trip + overhead (inner term of eq. 5),
    for a request of ``batch`` images."""
    times = server_times(spec, cluster, stage, flops, batch)
    worst = max(times, key=lambda t: t.total_s)
    return StageLatency(worst.compute_s, worst.transfer_s, worst.overhead_s, worst.total_s, worst.server)


@dataclass(frozen=True)
class LatencyBreakdown:
    """Predicted latency of one task, seconds: per stage, then edge-cloud transfer and cloud compute."""

    stages: tuple[StageLatency, ...]
    cloud_transfer_s: float
    cloud_compute_s: float
    cloud_overhead_s: float = 0.0
    controller_s: float = 0.0  # the cluster's per-task overhead at co1 (``Cluster.controller_overhead_s``)

    @property
    def edge_s(self) -> float:
        """Edge part: the sum of the stages (the objective of eq. 6)."""
        return sum(s.total_s for s in self.stages)

    @property
    def cloud_s(self) -> float:
        return self.cloud_transfer_s + self.cloud_compute_s + self.cloud_overhead_s

    @property
    def total_s(self) -> float:
        """Edge + cloud: the objective of eq. (5), plus overheads."""
        return self.edge_s + self.cloud_s + self.controller_s

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [s._asdict() for s in self.stages], "cloud_transfer_s": self.cloud_transfer_s,
                "cloud_compute_s": self.cloud_compute_s, "cloud_overhead_s": self.cloud_overhead_s,
                "controller_s": self.controller_s, "edge_s": self.edge_s, "total_s": self.total_s}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LatencyBreakdown:
        stages = tuple(StageLatency(float(s["compute_s"]), float(s["transfer_s"]), float(s["overhead_s"]),
                                    float(s["total_s"]), int(s["server"])) for s in raw["stages"])
        return cls(stages, float(raw["cloud_transfer_s"]), float(raw["cloud_compute_s"]),
                   float(raw.get("cloud_overhead_s", 0.0)), float(raw.get("controller_s", 0.0)))


def cloud_times(spec: ModelSpec, cloud: Cloud, first: int | None = None,
                batch: int = 1) -> tuple[float, float, float]:
    """(transfer eq. 4, compute eq. 2, request overhead) of the cloud part of one task, seconds; of a
    batch of ``batch`` tasks in one request: transfer and compute x batch, the overhead once.

    ``first``: the first layer the cloud runs; None or ``spec.n_edge`` is the paper's cut (the
    fully connected layers at ``k_c``); an earlier cut ships the map entering that layer and runs
    the remaining edge layers in the cloud too, each at ``Cloud.layer_rate`` (``cloud_part_time``).
    """
    if first is None or first == spec.n_edge:
        return (cloud_transfer_time(batch * map_bytes(spec.feature_shape), cloud.link_bps),
                cloud_compute_time(batch * spec.cloud_flops(), cloud.flops), cloud.overhead_s)
    if not 0 <= first < spec.n_edge:
        raise InvalidPlan(f"the cloud cannot start at layer {first}: expected 0..{spec.n_edge}")
    return (cloud_transfer_time(batch * map_bytes(spec.shapes()[first]), cloud.link_bps),
            batch * cloud_part_time(spec, first, cloud), cloud.overhead_s)


def predict(spec: ModelSpec, cluster: Cluster, stages: Sequence[StageLike],
            cloud_from: int | None = None, batch: int = 1) -> LatencyBreakdown:
    """Predicted single-task latency of a plan's stages, eq. (5) with strategy-aware transfers; the
    cloud runs layers ``cloud_from`` onwards (default: the fully connected layers, ``spec.n_edge``).
    ``batch``: the latency of a batch of that many tasks run as one unit (module docstring, *Batches*);
    its throughput is ``batch / total_s``."""
    if batch < 1:
        raise InvalidPlan(f"batch of {batch} tasks: expected 1 or more")
    flops = spec.layer_flops()
    per_stage = tuple(stage_latency(spec, cluster, st, flops, batch) for st in stages)
    return LatencyBreakdown(per_stage, *cloud_times(spec, cluster.cloud, cloud_from, batch),
                            cluster.controller_overhead_s)
