"""Plans: which layers each stage runs, with which strategy, on which servers, with how many threads.

``make_plan(split="paper")`` reproduces the paper: one conv per group (``conv_groups``), kernel-rows,
eq. (7) ratios refined by Algorithm 1 on compute time only, at most kernel-height servers (the
fastest), and the zone split across convs in proportion to their FLOPs (sub-zone per conv).

``make_plan(split="edgesplit")`` searches groups (DP over cut points), strategies and the optimal
integer split of each group (``search.best_grouping``), minimising the predicted single-task edge
latency (eq. 6 objective; the cloud part is the same for every plan). An unused server costs
nothing while a used one pays its round trip and overhead, so the optimal split leaves servers out
(down to one) where transfers cost more than they save.

Threads when groups are fused: each server's zone K_m is split among the stages in proportion to
their FLOPs (at least 1 each), the paper's rule applied to stages instead of convs. Every stage then
takes about the same time, so the multi-task pipeline has no bottleneck stage and its throughput,
M*K*eta / F_edge, is the same for any grouping; a single task pays N_stages times that stage time,
so fewer, fused stages lower its latency at the price of halo recomputation, which the DP weighs.
After the split, a server's zone is re-divided among only the stages that use it (a sub-zone for a
stage the server takes no part in would idle), and kept when the exact prediction improves.
A zone smaller than the number of stages hosts only its heaviest stages, one thread each (the
search caps the number of stages at the largest zone). FLOPs here are a group's (its conv plus the
relu and pooling after it; the conv dominates).
``one_conv_per_group=True`` forces the paper's grouping (sub-zone per conv) so the pipeline has one
stage per conv to alternate; ``threads`` fixes the threads per stage and server (e.g. from the TD3
allocator) and then the grouping is one conv per group unless ``groups`` is given.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.plan.latency import LatencyBreakdown, predict
from edgesplit.plan.ratios import algorithm1, eq7_coefficients, eq7_ratios
from edgesplit.plan.search import (
    SpecFacts,
    StageChoice,
    best_grouping,
    best_stage,
    cut_points,
    valid_strategies,
)
from edgesplit.registry import Registry
from edgesplit.split import STRATEGIES, Slice, conv_groups, make_slices, part_total
from edgesplit.type_aliases import Split, Strategy

ThreadTable = Sequence[Sequence[int]]


@dataclass(frozen=True)
class StagePlan:
    """One stage: the group ``[start, stop)`` split by ``strategy``; ``parts[i]`` units and ``threads[i]``
    threads on server ``servers[i]`` (an index into ``Cluster.servers``), in band order."""

    start: int
    stop: int
    strategy: Strategy
    servers: tuple[int, ...]
    parts: tuple[int, ...]
    threads: tuple[int, ...]

    def slices(self, spec: ModelSpec) -> list[Slice]:
        return make_slices(spec, self.start, self.stop, self.strategy, self.parts)

    def to_dict(self) -> dict[str, Any]:
        """The one serialisation of a stage: in a plan (``Plan.to_dict``, Redis ``plan:{model}``) and in
        a task's route (the orchestrator's ``routes.Step`` is a ``StagePlan``). ``layers`` repeats
        ``[start, stop]`` for the route's readers (docs/API.md)."""
        return {"start": self.start, "stop": self.stop, "layers": [self.start, self.stop],
                "strategy": self.strategy, "servers": list(self.servers), "parts": list(self.parts),
                "threads": list(self.threads)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StagePlan:
        start, stop = (raw["start"], raw["stop"]) if "start" in raw else raw["layers"]
        return cls(int(start), int(stop), raw["strategy"], tuple(map(int, raw["servers"])),
                   tuple(map(int, raw["parts"])), tuple(map(int, raw["threads"])))


@dataclass(frozen=True)
class Plan:
    """A model's plan: its stages in order, the predicted latency, how it was made, a version number."""

    model: str
    stages: tuple[StagePlan, ...]
    predicted: LatencyBreakdown
    split: Split = "edgesplit"
    version: int = 1
    server_names: tuple[str, ...] = ()
    cloud_from: int | None = None  # first layer run in the cloud; None: the FC layers (spec.n_edge)

    def to_dict(self) -> dict[str, Any]:
        out = {"model": self.model, "split": self.split, "version": self.version,
               "server_names": list(self.server_names), "stages": [s.to_dict() for s in self.stages],
               "predicted": self.predicted.to_dict()}
        return out if self.cloud_from is None else {**out, "cloud_from": self.cloud_from}

    def edge_stop(self, spec: ModelSpec) -> int:
        """Where the edge part ends: ``cloud_from``, else the first fully connected layer."""
        return spec.n_edge if self.cloud_from is None else self.cloud_from

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Plan:
        try:
            return cls(str(raw["model"]), tuple(StagePlan.from_dict(s) for s in raw["stages"]),
                       LatencyBreakdown.from_dict(raw["predicted"]), raw.get("split", "edgesplit"),
                       int(raw.get("version", 1)), tuple(raw.get("server_names", ())),
                       None if raw.get("cloud_from") is None else int(raw["cloud_from"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidPlan(f"malformed plan: {e!r}") from e

    def validate(self, spec: ModelSpec, n_servers: int) -> None:
        """Raise InvalidPlan unless the stages cover the edge layers in order with valid splits."""
        at = 0
        for st in self.stages:
            if st.start != at:
                raise InvalidPlan(f"stage [{st.start}, {st.stop}) should start at layer {at}")
            if not len(st.servers) == len(st.parts) == len(st.threads) or not st.servers:
                raise InvalidPlan(f"stage [{st.start}, {st.stop}): servers, parts, threads differ in length")
            if any(not 0 <= m < n_servers for m in st.servers) or min(st.threads) < 1:
                raise InvalidPlan(f"stage [{st.start}, {st.stop}): bad server index or thread count")
            st.slices(spec)
            at = st.stop
        if at != self.edge_stop(spec) or not 0 <= at <= spec.n_edge:
            raise InvalidPlan(f"stages end at layer {at}, the edge part ends at {self.edge_stop(spec)}")


def apportion(weights: Sequence[float], total: int, minimum: int = 1) -> list[int]:
    """Integers >= ``minimum`` summing to ``total``, in proportion to ``weights`` (largest remainder)."""
    n = len(weights)
    if n * minimum > total:
        raise InvalidPlan(f"a zone of {total} threads cannot give {minimum} each to {n} stages")
    if sum(weights) <= 0:
        weights = [1.0] * n
    quota = [total * w / sum(weights) for w in weights]
    out = [max(minimum, int(q)) for q in quota]
    while sum(out) > total:
        j = max((i for i in range(n) if out[i] > minimum), key=lambda i: out[i] - quota[i])
        out[j] -= 1
    while sum(out) < total:
        j = max(range(n), key=lambda i: quota[i] - out[i])
        out[j] += 1
    return out


def active_servers(cluster: Cluster, exclude: Collection[int | str] = frozenset()) -> list[int]:
    """Indices of the servers not excluded (by index or name), fastest zone first."""
    dropped = {cluster.index(x) for x in exclude}
    left = [m for m in range(len(cluster.servers)) if m not in dropped]
    if not left:
        raise InvalidPlan(f"all {len(cluster.servers)} servers are excluded; a plan needs at least 1")
    return sorted(left, key=lambda m: (-cluster.servers[m].flops, m))


def zone_split(weights: Sequence[float], zone: int) -> list[int]:
    """A server's zone split across stages by FLOPs, at least 1 each; a zone smaller than the number
    of stages gives 1 thread to its ``zone`` heaviest stages and 0 (no part in the stage) to the rest."""
    if zone >= len(weights):
        return apportion(weights, zone)
    heaviest = sorted(range(len(weights)), key=lambda g: (-weights[g], g))[:zone]
    return [1 if g in heaviest else 0 for g in range(len(weights))]


def _zone_threads(f: SpecFacts, cluster: Cluster, groups: Sequence[tuple[int, int]],
                  threads: ThreadTable | None) -> list[list[int]]:
    """threads[g][m]: the given table (checked), or each zone split across groups by FLOPs."""
    n_servers = len(cluster.servers)
    if threads is None:
        weights = [f.group_flops(a, b) for a, b in groups]
        per_server = [zone_split(weights, s.threads) for s in cluster.servers]
        return [[per_server[m][g] for m in range(n_servers)] for g in range(len(groups))]
    if len(threads) != len(groups) or any(len(row) != n_servers for row in threads):
        raise InvalidPlan(f"threads must be {len(groups)} stages x {n_servers} servers")
    for m, srv in enumerate(cluster.servers):
        column = [int(row[m]) for row in threads]
        if min(column) < 0 or sum(column) > srv.threads:
            raise InvalidPlan(f"server {srv.name}: threads {column} must be >= 0 and sum to at most "
                              f"its zone of {srv.threads} (eq. 5f)")
    return [[int(k) for k in row] for row in threads]


def _hosts(table: Sequence[Sequence[int]], g: int, active: Sequence[int],
           group: tuple[int, int]) -> list[int]:
    """The active servers with at least one thread for stage g."""
    hosts = [m for m in active if table[g][m] > 0]
    if not hosts:
        raise InvalidPlan(f"no server has a thread for the stage of layers [{group[0]}, {group[1]}): "
                          "the zones are smaller than the number of stages")
    return hosts


def _stage(choice: StageChoice, servers: Sequence[int], threads: Sequence[int]) -> StagePlan:
    used = [i for i, p in enumerate(choice.parts) if p > 0]
    return StagePlan(choice.start, choice.stop, choice.strategy, tuple(servers[i] for i in used),
                     tuple(choice.parts[i] for i in used), tuple(threads[i] for i in used))


def paper_stages(f: SpecFacts, cluster: Cluster, active: Sequence[int],
                 threads: ThreadTable | None = None) -> list[StagePlan]:
    """The paper's split: kernel-rows per conv group, eq. (7) + Algorithm 1 on compute time only.

    A group kernel-rows cannot take (no leading conv) falls back to rows with the same algorithm.
    """
    groups = conv_groups(f.spec)
    table = _zone_threads(f, cluster, groups, threads)
    stages = []
    for g, (a, b) in enumerate(groups):
        strategy: Strategy = "kernel-rows" if valid_strategies(f.spec, a, b, ("kernel-rows",)) else "rows"
        total = part_total(f.spec, a, b, strategy)
        speed = {m: table[g][m] * cluster.servers[m].flops_per_thread for m in active}
        chosen = sorted(_hosts(table, g, active, (a, b)), key=lambda m: (-speed[m], m))[:total]
        ratios = eq7_ratios(eq7_coefficients(f.group_flops(a, b), [table[g][m] for m in chosen],
                                             [cluster.servers[m].flops_per_thread for m in chosen]))
        parts = algorithm1(total, ratios, [speed[m] for m in chosen])
        choice = StageChoice(a, b, strategy, tuple(parts), 0.0)
        stages.append(_stage(choice, chosen, [table[g][m] for m in chosen]))
    return stages


def _resplit(f: SpecFacts, cluster: Cluster, group: tuple[int, int], servers: Sequence[int],
             threads: Sequence[int]) -> StagePlan:
    """Best strategy and optimal split of a group over ``servers`` with integer ``threads`` (>= 1)."""
    choice = best_stage(f, group[0], group[1], [cluster.servers[m] for m in servers], threads)
    assert choice is not None
    return _stage(choice, servers, threads)


def _split_all(f: SpecFacts, cluster: Cluster, groups: Sequence[tuple[int, int]], active: Sequence[int],
               table: Sequence[Sequence[int]]) -> list[StagePlan]:
    out = []
    for g, group in enumerate(groups):
        hosts = _hosts(table, g, active, group)
        out.append(_resplit(f, cluster, group, hosts, [table[g][m] for m in hosts]))
    return out


def _rebalanced(f: SpecFacts, cluster: Cluster, stages: Sequence[StagePlan]) -> list[StagePlan]:
    """Re-divide each server's zone among the stages that use it (by FLOPs), then re-split them."""
    new_threads: list[dict[int, int]] = [{} for _ in stages]
    for m, srv in enumerate(cluster.servers):
        users = [g for g, st in enumerate(stages) if m in st.servers]
        if not users or len(users) > srv.threads:
            continue
        shares = apportion([f.group_flops(stages[g].start, stages[g].stop) for g in users], srv.threads)
        for g, k in zip(users, shares, strict=True):
            new_threads[g][m] = k
    return [_resplit(f, cluster, (st.start, st.stop), st.servers,
                     [new_threads[g].get(m, k) for m, k in zip(st.servers, st.threads, strict=True)])
            for g, st in enumerate(stages)]


def edgesplit_stages(f: SpecFacts, cluster: Cluster, active: Sequence[int],
                     threads: ThreadTable | None = None,
                     groups: Sequence[tuple[int, int]] | None = None,
                     stop: int | None = None) -> list[StagePlan]:
    """Our split: DP over groups and strategies, optimal integer splits, zones re-divided (module doc);
    ``stop``: the edge part ends there (an edge-cloud cut), default ``spec.n_edge``."""
    if threads is not None:
        fixed = list(groups) if groups is not None else conv_groups(f.spec)
        return _split_all(f, cluster, fixed, active, _zone_threads(f, cluster, fixed, threads))
    max_stages = max(cluster.servers[m].threads for m in active)
    choices = best_grouping(f, [cluster.servers[m] for m in active], groups, max_stages=max_stages,
                            stop=stop)
    chosen = [(c.start, c.stop) for c in choices]
    stages = _split_all(f, cluster, chosen, active, _zone_threads(f, cluster, chosen, None))
    best = predict(f.spec, cluster, stages, stop).edge_s
    for _ in range(4):
        candidate = _rebalanced(f, cluster, stages)
        if candidate == stages:
            break
        value = predict(f.spec, cluster, candidate, stop).edge_s
        if value >= best:
            break
        stages, best = candidate, value
    return stages


def _paper_or_none(f: SpecFacts, cluster: Cluster, active: Sequence[int]) -> list[StagePlan] | None:
    """The paper's stages as a candidate, or None where its one-conv-per-stage zones do not fit."""
    try:
        return paper_stages(f, cluster, active)
    except InvalidPlan:
        return None


def _best_cut(f: SpecFacts, cluster: Cluster, active: Sequence[int]) -> Plan:
    """The edgesplit plan with the edge-cloud cut chosen too: for each cut point c (``search.cut_points``)
    layers ``[0, c)`` split over the edge by ``edgesplit_stages`` and layers ``[c, L)`` in the cloud
    (eq. 2 at ``Cloud.layer_rate``, the map entering layer c shipped as in eq. 4); the lowest predicted
    total (eq. 5) wins, ties to the later cut. c = 0 is DADS's all-in-the-cloud cut, c = ``n_edge`` the
    paper's, so the plan is never predicted slower than either (nor than the paper's split)."""
    spec = f.spec
    names = tuple(s.name for s in cluster.servers)
    candidates: list[Plan] = []
    for cut in reversed(cut_points(spec)):
        stages = edgesplit_stages(f, cluster, active, stop=cut) if cut else []
        candidates.append(Plan(spec.name, tuple(stages), predict(spec, cluster, stages, cut), "edgesplit", 1,
                               names, None if cut == spec.n_edge else cut))
    paper = _paper_or_none(f, cluster, active)
    if paper is not None:
        candidates.append(Plan(spec.name, tuple(paper), predict(spec, cluster, paper), "edgesplit", 1, names))
    return min(candidates, key=lambda p: p.predicted.total_s)


def make_plan(spec: ModelSpec, cluster: Cluster, split: Split = "edgesplit",
              threads: ThreadTable | None = None, exclude: Collection[int | str] = frozenset(), *,
              one_conv_per_group: bool = False, groups: Sequence[tuple[int, int]] | None = None) -> Plan:
    """Plan ``spec`` on ``cluster`` (module docstring). ``threads[g][m]``: threads of stage g on server m
    (all cluster servers); ``exclude``: servers (index or name) to leave out, e.g. failed executors.

    ``split="edgesplit"`` is never worse than ``split="paper"`` in the predicted edge latency: the
    paper's plan is one of its candidates (used only if the search's plan predicts slower). Where the
    cluster gives the cloud's rate on conv layers (``Cloud.conv_flops``, measured on the testbed),
    the search also chooses the edge-cloud cut (``_best_cut``).
    """
    family = PLANNER_FAMILIES[split]
    facts = SpecFacts.of(spec, cluster.profile(spec.name), cluster.fanout_s)
    return family.plan(facts, cluster, active_servers(cluster, exclude), threads, one_conv_per_group, groups)


def _plan(f: SpecFacts, cluster: Cluster, stages: Sequence[StagePlan], predicted: LatencyBreakdown,
          split: Split) -> Plan:
    return Plan(f.spec.name, tuple(stages), predicted, split, 1, tuple(s.name for s in cluster.servers))


def _paper_plan(f: SpecFacts, cluster: Cluster, active: Sequence[int], threads: ThreadTable | None,
                one_conv_per_group: bool, groups: Sequence[tuple[int, int]] | None) -> Plan:
    """The paper's family: ``paper_stages`` (its own grouping: ``one_conv_per_group`` and ``groups``
    do not apply)."""
    stages = paper_stages(f, cluster, active, threads)
    return _plan(f, cluster, stages, predict(f.spec, cluster, stages), "paper")


def _edgesplit_plan(f: SpecFacts, cluster: Cluster, active: Sequence[int], threads: ThreadTable | None,
                    one_conv_per_group: bool, groups: Sequence[tuple[int, int]] | None) -> Plan:
    """Our family: ``edgesplit_stages``, with the paper's plan as a candidate (``make_plan``)."""
    conv = conv_groups(f.spec) if one_conv_per_group and groups is None else groups
    if cluster.cloud.conv_flops is not None and threads is None and conv is None:
        return _best_cut(f, cluster, active)
    stages = edgesplit_stages(f, cluster, active, threads, conv)
    predicted = predict(f.spec, cluster, stages)
    paper = _paper_or_none(f, cluster, active) if threads is None and groups is None else None
    if paper is not None:
        paper_predicted = predict(f.spec, cluster, paper)
        if paper_predicted.edge_s < predicted.edge_s:
            stages, predicted = paper, paper_predicted
    return _plan(f, cluster, stages, predicted, "edgesplit")


class PlanFunction(Protocol):
    def __call__(self, f: SpecFacts, cluster: Cluster, active: Sequence[int], threads: ThreadTable | None,
                 one_conv_per_group: bool, groups: Sequence[tuple[int, int]] | None, /) -> Plan: ...


class PlannerFamily(NamedTuple):
    """A planner family: how it plans (``plan``) and the strategies its stages may use (which the
    allocator's cost tables consider too, ``alloc.cost.split_strategies``)."""

    name: Split
    strategies: tuple[Strategy, ...]
    plan: PlanFunction


PLANNER_FAMILIES: Registry[Split, PlannerFamily] = Registry("split", {
    "edgesplit": PlannerFamily("edgesplit", STRATEGIES, _edgesplit_plan),
    "paper": PlannerFamily("paper", ("kernel-rows",), _paper_plan),
})
SPLITS: tuple[Split, ...] = PLANNER_FAMILIES.names
