"""The allocation problem of one resource zone, as cost tables built from the planner's latency model.

A *stage* is one conv group of the paper (``edgesplit.split.conv_groups``: one conv per group, the
sub-zone of section 3.2). ``times[i][m, d, k]`` is the planner's cost (``edgesplit.plan.search``:
compute eq. (1) + round trip eq. (3) + request overhead, 0 s for 0 units) of ``d`` units of stage i
on server m with ``k`` threads, for the best strategy table of the split family:

* ``split="paper"``: kernel-rows (the paper's section 3.3), units = kernel rows;
* ``split="edgesplit"``: rows, kernel-rows and channels (the planner's ``best_stage`` choices).

The stage latency of a thread column ``k[m]`` is the optimal integer min-max split, the inner max of
eq. (6): ``min over strategies, over d with sum_m d_m = D, of max_m times[m, d_m, k_m]``. With
``times`` nondecreasing in ``d`` the optimum is the D-th smallest of ``{times[m, j, k_m]: j >= 1}``
(the water-filling argument of ``plan.ratios.waterfill``), which is what ``stage_latency`` computes.
The paper's Algorithm 1 split is at best this good; we score every allocation with the optimal split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Server
from edgesplit.plan.planner import PLANNER_FAMILIES
from edgesplit.plan.search import SpecFacts, cost_table, unit_loads, valid_strategies
from edgesplit.split import Strategy, conv_groups
from edgesplit.type_aliases import Split

Objective = Literal["sum", "bottleneck"]
OBJECTIVES: tuple[Objective, ...] = ("sum", "bottleneck")
AllocSplit = Split  # the planner families (``plan.planner.PLANNER_FAMILIES``)
ALLOC_SPLITS: tuple[AllocSplit, ...] = PLANNER_FAMILIES.names
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def split_strategies(split: AllocSplit) -> tuple[Strategy, ...]:
    """Strategies a stage may use under a split family (module docstring)."""
    return PLANNER_FAMILIES[split].strategies


@dataclass(frozen=True)
class StageTables:
    """Cost tables of one stage: one ``(M, D+1, kcap+1)`` array per usable strategy (seconds).

    Column ``k = 0`` is +inf (every sub-zone has at least one thread, eq. 5d).
    """

    start: int
    stop: int
    strategies: tuple[Strategy, ...]
    times: tuple[FloatArray, ...]

    def latency(self, column: Sequence[int] | IntArray) -> float:
        """Stage latency (s) of threads ``column[m]``: the optimal integer min-max split (module doc)."""
        k = np.asarray(column, dtype=np.int64)
        return min(table_latency(t, k) for t in self.times)


def table_latency(t: FloatArray, column: IntArray) -> float:
    """One strategy table's stage latency (s) for threads ``column[m]``: the D-th smallest of the
    servers' unit costs ``t[m, 1:, column[m]]`` (D = the group's units), the optimal integer min-max
    split's makespan."""
    units = t.shape[1] - 1
    values = t[np.arange(len(column)), 1:, column].ravel()
    return float(np.partition(values, units - 1)[units - 1])


def candidate_latencies(t: FloatArray, kmax: Sequence[int]) -> FloatArray:
    """The values a column's ``table_latency`` can take with 1..kmax[m] threads per server, sorted:
    the table's values between every server at its most threads and every server at one (latency
    is nonincreasing in each server's threads)."""
    low = table_latency(t, np.asarray(kmax, dtype=np.int64))
    high = table_latency(t, np.ones(len(kmax), dtype=np.int64))
    values = np.unique(t[:, 1:, 1:])
    return values[(values >= low) & (values <= high)]


@dataclass(frozen=True)
class AllocProblem:
    """One zone's sub-zone allocation: stage tables, the zone size per server, the objective's meaning.

    An *allocation* is an ``(M, N)`` integer array: ``alloc[m, i]`` threads of server m for stage i,
    each >= 1, each row summing to ``zone[m]`` (eq. 5d, 5f).
    """

    model: str
    stages: tuple[StageTables, ...]
    zone: tuple[int, ...]
    split: AllocSplit = "edgesplit"
    server_names: tuple[str, ...] = field(default=())

    @property
    def n_servers(self) -> int:
        return len(self.zone)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def kmax(self, m: int) -> int:
        """Most threads one sub-zone of server m can get: its zone minus one per other stage."""
        return self.zone[m] - self.n_stages + 1

    def latencies(self, alloc: IntArray) -> FloatArray:
        """Per-stage latencies (s) of an allocation."""
        return np.array([st.latency(alloc[:, i]) for i, st in enumerate(self.stages)])

    def value(self, alloc: IntArray, objective: Objective) -> float:
        """Objective (s): ``sum`` of stage latencies (eq. 6) or the ``bottleneck`` (largest) one."""
        lat = self.latencies(alloc)
        return float(lat.sum() if objective == "sum" else lat.max())

    def check(self, alloc: IntArray | Sequence[Sequence[int]]) -> IntArray:
        """The allocation as an array; InvalidPlan unless it has the right shape, k >= 1, rows = zone."""
        a = np.asarray(alloc, dtype=np.int64)
        if a.shape != (self.n_servers, self.n_stages):
            raise InvalidPlan(f"allocation must be {self.n_servers} servers x {self.n_stages} stages, "
                              f"got shape {list(a.shape)}")
        if a.min() < 1:
            raise InvalidPlan("every sub-zone needs at least 1 thread (eq. 5d)")
        sums = a.sum(axis=1)
        if (sums != np.asarray(self.zone)).any():
            raise InvalidPlan(f"threads per server {sums.tolist()} must equal the zones {list(self.zone)} "
                              "(eq. 5f)")
        return a


def check_zone(zone: Sequence[int], n_stages: int, model: str) -> None:
    """InvalidPlan unless every server's zone has at least one thread per stage."""
    for m, z in enumerate(zone):
        if z < n_stages:
            raise InvalidPlan(f"server {m}: a zone of {z} threads cannot give 1 thread to each of the "
                              f"{n_stages} convs of {model}")


def stage_tables(f: SpecFacts, start: int, stop: int, servers: Sequence[Server], kcap: int,
                 allowed: Sequence[Strategy]) -> StageTables:
    """Cost tables of the group ``[start, stop)`` for ``k = 1..kcap`` threads on each server."""
    strategies = tuple(valid_strategies(f.spec, start, stop, allowed))
    if not strategies:
        raise InvalidPlan(f"no strategy among {list(allowed)} can split layers [{start}, {stop})")
    times = []
    for strategy in strategies:
        loads = unit_loads(f, start, stop, strategy)
        per_k = [np.full((len(servers), len(loads.flops)), np.inf)]
        per_k += [cost_table(loads, servers, [k] * len(servers)) for k in range(1, kcap + 1)]
        times.append(np.stack(per_k, axis=2))
    return StageTables(start, stop, strategies, tuple(times))


def build_problem(spec: ModelSpec, servers: Sequence[Server], zone: Sequence[int] | None = None,
                  split: AllocSplit = "edgesplit") -> AllocProblem:
    """The allocation problem of ``spec`` on ``servers``; ``zone[m]`` defaults to each server's threads."""
    zone = [s.threads for s in servers] if zone is None else list(zone)
    if len(zone) != len(servers):
        raise InvalidPlan(f"{len(zone)} zone sizes given for {len(servers)} servers")
    groups = conv_groups(spec)
    check_zone(zone, len(groups), spec.name)
    f = SpecFacts.of(spec)
    kcap = max(zone) - len(groups) + 1
    allowed = split_strategies(split)
    stages = tuple(stage_tables(f, a, b, servers, kcap, allowed) for a, b in groups)
    return AllocProblem(spec.name, stages, tuple(int(z) for z in zone), split,
                        tuple(s.name for s in servers))


def even_allocation(zone: Sequence[int], n_stages: int) -> IntArray:
    """The same threads for every sub-zone of a server (remainder to the first stages)."""
    out = np.zeros((len(zone), n_stages), dtype=np.int64)
    for m, z in enumerate(zone):
        base, extra = divmod(int(z), n_stages)
        out[m] = base
        out[m, :extra] += 1
    return out
