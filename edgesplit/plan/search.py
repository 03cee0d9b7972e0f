"""The planner's search: per-unit loads of a group, per-server cost tables, and the DP over cut points.

Cost of ``n`` units of a group on server m (a nondecreasing function of n, 0 at n = 0):
compute eq. (1) + round trip eq. (3) + the server's request overhead. The loads are functions of the
unit count only, so they bound the exact, position-dependent ones from above:

* ``rows``: a band of n output rows needs at most ``(n-1)*s + span`` input rows at each window
  layer going backwards, capped by the map's height (exact for a band inside the map; a band
  against the map's edge needs fewer, its padding is not shipped). FLOPs count the halo
  recomputation layer by layer.
* ``kernel-rows``: n kernel rows read ``(H_out-1)*s + d*(n-1) + 1`` input rows (capped), compute
  n/b of the conv and return the conv's full output.
* ``channels``: n channels receive the whole needed input, compute n/C of the group, return n
  channels.

The final plan is always scored with the exact model (``latency.predict``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import Conv2d, ModelSpec, is_window
from edgesplit.plan.cluster import Server, fanout_at
from edgesplit.plan.latency import BYTES_PER_VALUE, host_slowdown, throttle_delay
from edgesplit.plan.ratios import minmax_split
from edgesplit.profiles import SliceProfile
from edgesplit.split import STRATEGIES, Strategy, check_group, group_needs, part_total

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SpecFacts:
    """What the search reads of a spec, computed once: shapes and per-layer FLOPs."""

    spec: ModelSpec
    shapes: tuple[tuple[int, int, int], ...]
    flops: tuple[float, ...]
    profile: SliceProfile | None = None  # measured slice efficiency (edgesplit.profiles), if any
    fanout_s: tuple[tuple[int, float], ...] = ()  # the cluster's measured fan-out (Cluster.fanout_s)

    @classmethod
    def of(cls, spec: ModelSpec, profile: SliceProfile | None = None,
           fanout_s: tuple[tuple[int, float], ...] = ()) -> SpecFacts:
        return cls(spec, tuple(spec.shapes()), tuple(spec.layer_flops()[: spec.n_edge]), profile, fanout_s)

    @property
    def edge_flops(self) -> float:
        return sum(self.flops)

    def group_flops(self, start: int, stop: int) -> float:
        return sum(self.flops[start:stop])


class UnitLoads(NamedTuple):
    """FLOPs, input bytes and output bytes of n = 0..total units (arrays of length total + 1)."""

    flops: Array
    in_bytes: Array
    out_bytes: Array


def valid_strategies(spec: ModelSpec, start: int, stop: int,
                     allowed: Sequence[Strategy] = STRATEGIES) -> list[Strategy]:
    """The strategies ``check_group`` accepts for ``[start, stop)``."""
    out = []
    for strategy in allowed:
        try:
            check_group(spec, start, stop, strategy)
        except InvalidPlan:
            continue
        out.append(strategy)
    return out


def _rows_loads(f: SpecFacts, start: int, stop: int) -> UnitLoads:
    c_out, h_out, w_out = f.shapes[stop]
    n = np.arange(h_out + 1, dtype=np.float64)
    rows = n.copy()
    flops = np.zeros_like(n)
    for i in range(stop - 1, start - 1, -1):
        h = f.shapes[i + 1][1]
        rows = np.minimum(rows, h)
        flops += f.flops[i] * rows / h
        layer = f.spec.layers[i]
        if is_window(layer):
            s, span = layer.stride[0], layer.span()[0]  # type: ignore[union-attr]
            rows = np.where(rows > 0, (rows - 1) * s + span, 0.0)
    c_in, h_in, w_in = f.shapes[start]
    in_bytes = BYTES_PER_VALUE * c_in * w_in * np.minimum(rows, h_in)
    return UnitLoads(flops, in_bytes, BYTES_PER_VALUE * c_out * w_out * n)


def _kernel_rows_loads(f: SpecFacts, start: int, stop: int) -> UnitLoads:
    conv = f.spec.layers[start]
    assert isinstance(conv, Conv2d)
    b = conv.kernel[0]
    n = np.arange(b + 1, dtype=np.float64)
    c_in, h_in, w_in = f.shapes[start]
    c_out, h_out, w_out = f.shapes[start + 1]
    rows = np.where(n > 0, (h_out - 1) * conv.stride[0] + conv.dilation[0] * (n - 1) + 1, 0.0)
    in_bytes = BYTES_PER_VALUE * c_in * w_in * np.minimum(rows, h_in)
    out_bytes = np.where(n > 0, float(BYTES_PER_VALUE * c_out * h_out * w_out), 0.0)
    return UnitLoads(f.flops[start] * n / b, in_bytes, out_bytes)


def _channels_loads(f: SpecFacts, start: int, stop: int) -> UnitLoads:
    c_out, h_out, w_out = f.shapes[stop]
    n = np.arange(c_out + 1, dtype=np.float64)
    need = group_needs(f.spec, start, stop, (0, h_out))[0].rows
    c_in, _, w_in = f.shapes[start]
    in_per_channel = BYTES_PER_VALUE * (need[1] - need[0]) * w_in
    has_conv = isinstance(f.spec.layers[start], Conv2d)
    in_bytes = np.where(n > 0, float(in_per_channel * c_in), 0.0) if has_conv else in_per_channel * n
    flops = f.group_flops(start, stop) * n / c_out
    return UnitLoads(flops, in_bytes, BYTES_PER_VALUE * h_out * w_out * n)


def unit_loads(f: SpecFacts, start: int, stop: int, strategy: Strategy) -> UnitLoads:
    """Loads of 0..total units of the group ``[start, stop)`` split by ``strategy`` (module docstring);
    with a profile, the FLOPs are scaled by the measured slice efficiency, as ``latency.server_times``
    scales a slice's compute time."""
    loads = UNIT_LOADS[strategy](f, start, stop)
    if f.profile is None:
        return loads
    return loads._replace(flops=loads.flops * f.profile.factors(start, stop, strategy, len(loads.flops) - 1))


# the planner's vectorised loads of each strategy (``split.strategies.STRATEGY`` holds the exact ones)
UNIT_LOADS: dict[Strategy, Callable[[SpecFacts, int, int], UnitLoads]] = {
    "rows": _rows_loads, "kernel-rows": _kernel_rows_loads, "channels": _channels_loads}


def cost_table(loads: UnitLoads, servers: Sequence[Server], threads: Sequence[float],
               slowdown: Sequence[float] | None = None, fanout_s: float = 0.0) -> Array:
    """``table[m, n]``: seconds for n units on ``servers[m]`` with ``threads[m]`` threads, 0 at n = 0;
    ``slowdown[m]`` (>= 1, ``inf`` to leave the server out) divides its computing rate; ``fanout_s``
    is the stage's fan-out cost (``Cluster.fanout``), added like the throttling wait."""
    speed = np.array([k * s.flops_per_thread for s, k in zip(servers, threads, strict=True)])
    out = np.zeros(len(servers), dtype=bool)
    if slowdown is not None:
        slow = np.asarray(slowdown, dtype=np.float64)
        out = np.isinf(slow)
        speed = speed / np.where(out, 1.0, slow)
    link = np.array([s.link_bps for s in servers])
    # the throttling wait as if every candidate server took part (the split is not known yet)
    overhead = np.array([s.overhead_s + throttle_delay(s, len(servers)) + fanout_s for s in servers])
    table = (loads.flops[None, :] / speed[:, None]
             + 8.0 * (loads.in_bytes + loads.out_bytes)[None, :] / link[:, None]
             + overhead[:, None])
    table[out, :] = np.inf
    table[:, 0] = 0.0
    return np.maximum.accumulate(table, axis=1)


class StageChoice(NamedTuple):
    """A group's best strategy and split over the candidate servers, with its predicted cost (s)."""

    start: int
    stop: int
    strategy: Strategy
    parts: tuple[int, ...]
    cost_s: float


def host_candidates(servers: Sequence[Server], threads: Sequence[float]) -> list[list[float]]:
    """Slowdown vectors (``host_slowdown``, ``inf`` = left out) of the server sets a stage may use.

    Servers on separate machines do not interact, so one set (all, factor 1) is exact. Co-hosted
    servers share cores, and whether one runs slows the others, so a cost per server is only right
    for a given set. Two sets are tried: every server, each host shared by all of its servers; and
    each host *packed*: its fastest servers until their threads reach its cores, the rest left out.
    With zones as large as the host (the local stack: 2 executors x 2 threads on 2 cores) packing
    gives one executor all the cores rather than two executors half a core's worth of threads each
    recomputing a halo.
    """
    every = host_slowdown(servers, threads)
    if all(srv.host is None for srv in servers):
        return [every]
    packed = [1.0 if srv.host is None else math.inf for srv in servers]
    taken: dict[str, float] = {}
    fastest = sorted(range(len(servers)), key=lambda m: (-threads[m] * servers[m].flops_per_thread, m))
    for m in fastest:
        srv = servers[m]
        if srv.host is not None and taken.get(srv.host, 0.0) < (srv.host_cores or 1):
            taken[srv.host] = taken.get(srv.host, 0.0) + threads[m]
            packed[m] = 1.0
    on = [x == 1.0 for x in packed]
    slow = host_slowdown(servers, threads, on)
    packed = [s if a else math.inf for s, a in zip(slow, on, strict=True)]
    return [every] if packed == every else [every, packed]


def best_stage(f: SpecFacts, start: int, stop: int, servers: Sequence[Server], threads: Sequence[float],
               allowed: Sequence[Strategy] = STRATEGIES) -> StageChoice | None:
    """Best (strategy, optimal split) of one group; ``parts`` is aligned with ``servers``.

    Trying each number of servers 1..M (fastest first) is subsumed: an unused server costs 0, so the
    optimum over all M servers is at most the optimum over any subset, and ``minmax_split`` breaks
    ties towards fewer servers. A server whose round trip and overhead cost more than the compute
    they save gets no units. Co-hosted servers are costed per candidate set (``host_candidates``).
    """
    best: StageChoice | None = None
    candidates = host_candidates(servers, threads)
    for strategy in valid_strategies(f.spec, start, stop, allowed):
        total = part_total(f.spec, start, stop, strategy)
        loads = unit_loads(f, start, stop, strategy)
        for slowdown in candidates:
            parts, cost = minmax_split(total, cost_table(loads, servers, threads, slowdown,
                                                         fanout_at(f.fanout_s, len(servers))))
            if best is None or cost < best.cost_s:
                best = StageChoice(start, stop, strategy, tuple(parts), cost)
    return best


def cut_points(spec: ModelSpec) -> list[int]:
    """Where a group may start: 0 and every window layer (a cut before a relu only adds a round trip)."""
    inner = [i for i in range(1, spec.n_edge) if is_window(spec.layers[i])]
    return [0, *inner, spec.n_edge]


def best_grouping(f: SpecFacts, servers: Sequence[Server],
                  groups: Sequence[tuple[int, int]] | None = None,
                  allowed: Sequence[Strategy] = STRATEGIES,
                  max_stages: int | None = None, stop: int | None = None) -> list[StageChoice]:
    """Groups, strategies and splits minimising the sum of stage costs (eq. 6) by DP over cut points.

    A group's threads on server m are its share of the zone, ``K_m * F_group / F_edge`` (at least 1),
    so a group's cost does not depend on the other groups and the DP is exact for these costs.
    ``groups`` fixes the grouping (e.g. one conv per group) and only strategies and splits are chosen;
    ``max_stages`` caps the number of stages (a zone of K threads hosts at most K sub-zones);
    ``stop`` ends the edge part early (layers ``[stop, L)`` then run in the cloud), a cut point or
    ``spec.n_edge`` (the default).
    """
    end = f.spec.n_edge if stop is None else stop
    total_flops = f.group_flops(0, end)

    def stage(a: int, b: int) -> StageChoice | None:
        share = f.group_flops(a, b) / total_flops
        return best_stage(f, a, b, servers, [max(1.0, s.threads * share) for s in servers], allowed)

    if groups is not None:
        fixed = [stage(a, b) for a, b in groups]
        if any(c is None for c in fixed):
            raise InvalidPlan(f"no strategy among {list(allowed)} can split every group of {list(groups)}")
        return [c for c in fixed if c is not None]
    points = [p for p in cut_points(f.spec) if p < end] + [end]
    cap = len(points) - 1 if max_stages is None else max(1, min(max_stages, len(points) - 1))
    choice = {(i, j): stage(points[i], points[j]) for j in range(len(points)) for i in range(j)}
    # best[j][n]: cheapest (cost, stages) covering layers [0, points[j]) with n stages
    Best = dict[int, tuple[float, list[StageChoice]]]
    start: Best = {0: (0.0, [])}
    best: list[Best] = [start] + [{} for _ in points[1:]]
    for j in range(1, len(points)):
        for i in range(j):
            c = choice[(i, j)]
            if c is None:
                continue
            for n, (value, chosen) in best[i].items():
                if n + 1 <= cap and (n + 1 not in best[j] or value + c.cost_s < best[j][n + 1][0]):
                    best[j][n + 1] = (value + c.cost_s, [*chosen, c])
    if not best[-1]:
        raise InvalidPlan(f"no strategy among {list(allowed)} can split the edge layers of {f.spec.name}")
    return min(best[-1].values(), key=lambda item: item[0])[1]
