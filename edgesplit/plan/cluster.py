"""Cluster description: edge servers, the cloud, their links (DESIGN.md sections 3 and 4).

A ``Server`` is one edge executor as the planner sees it: ``threads`` is the resource zone the
model gets on it (K_m of the paper), ``flops_per_thread`` the computing rate of one thread (eta_m,
FLOPS), ``link_bps`` the rate between it and the controller co1 (ra_m, bits/s) and ``overhead_s``
a fixed cost per request (serialisation, HTTP, scheduling). The ``Cloud`` holds the fully
connected layers: ``flops`` is k_c of eq. (2), ``link_bps`` the edge-cloud rate ra_c of eq. (4).
``controller_overhead_s`` (``controller: {overhead_s: ...}`` in a file) is a fixed cost per task at
co1 that the paper does not count: the client's request, the queue, Redis, the result's way back
(measured by ``edgesplit testbed up``; 0 in the named scenarios). ``fanout_s`` (``controller:
{fanout_s: {n: seconds}}``) is what a stage of n slice requests sent at once costs beyond the model's
per-server terms: the controller sends and receives the n requests one after another, and hosts that
share a machine's physical cores run their bursts at once; measured on the testbed (``testbed up``),
absent elsewhere (:func:`fanout_at`).

The paper's servers are separate machines. Executors may instead share one: pods on one node, or
the whole local stack on one computer. ``host`` names the machine a server runs on and
``host_cores`` its cores; servers of the same host that compute at the same time share those cores
(``latency.host_slowdown``). Cores may be a fraction: a host held to 0.2 of a core by a CPU quota
(a pod's CPU limit, a testbed host's cgroup) runs its one thread at a fifth of ``flops_per_thread``.
A server without a host has its zone's threads to itself. In a cluster
file, ``hosts: {name: {cores: N}}`` lists the machines and each executor names its ``host``.

Named scenarios:

* ``paper``: section 5.1 of the paper. 8 servers x 20 threads x 80 GFLOPS/thread, edge links drawn
  uniformly in 605-635 Gb/s, the edge-cloud link in 105-125 Mb/s, no per-request overhead.
* ``edge-1g``: the same, with 1 Gb/s edge links and 0.2 ms per request (servers and cloud), as on
  an ordinary wired LAN.

The paper does not give the cloud's FLOPS. ``PAPER_CLOUD_FLOPS`` is calibrated from its fig. 7:
DADS on AlexNet with one edge thread takes about 17 ms while No Split takes about 38 ms. With our
model No Split is (2.994 GFLOP of convs + 0.0868 GFLOP of FC) / 80 GFLOPS = 38.5 ms, which matches;
at one 80 GFLOPS thread every DADS cut inside the convs ships a large map (conv1's output is 1.92
Mbit, 16.7 ms at 115 Mb/s), so DADS's best cut sends the 32x32x3 float32 input (98,304 bits) to the
cloud and runs everything there: 17 ms = 98,304 b / 115 Mb/s (the link's mid-range, 0.855 ms) +
3.0812 GFLOP / k_c, hence k_c = 3.0812e9 / 16.145e-3 s = 1.908e11 FLOPS (about 2.4 edge threads).
``tests/unit/test_plan_dads.py`` recomputes the 17 ms.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from edgesplit.errors import InvalidInput, InvalidPlan, read_user_text
from edgesplit.profiles import SliceProfile

PAPER_FLOPS_PER_THREAD = 80e9
PAPER_THREADS = 20
PAPER_SERVERS = 8
PAPER_EDGE_LINK_BPS = (605e9, 635e9)
PAPER_CLOUD_LINK_BPS = (105e6, 125e6)
PAPER_CLOUD_FLOPS = 1.908e11
EDGE_1G_LINK_BPS = 1e9
EDGE_1G_OVERHEAD_S = 0.2e-3
DEFAULT_FLOPS_PER_THREAD = PAPER_FLOPS_PER_THREAD
DEFAULT_LINK_BPS = 1e9
SCENARIOS: tuple[str, ...] = ("paper", "edge-1g")


@dataclass(frozen=True)
class Server:
    """An edge server: zone threads K_m, FLOPS per thread eta_m, link to co1 ra_m (bits/s).

    ``flops_known`` is False when the cluster file did not give the FLOPS (a real executor not yet
    measured); ``flops_per_thread`` then holds ``DEFAULT_FLOPS_PER_THREAD``.
    """

    name: str
    threads: int
    flops_per_thread: float
    link_bps: float
    url: str | None = None
    overhead_s: float = 0.0
    flops_known: bool = True
    host: str | None = None
    host_cores: float | None = None
    host_period_s: float | None = None  # CFS period of the host's quota, when it has one (the testbed)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise InvalidPlan(f"server {self.name}: threads must be at least 1, got {self.threads}")
        if self.flops_per_thread <= 0 or self.link_bps <= 0 or self.overhead_s < 0:
            raise InvalidPlan(f"server {self.name}: flops_per_thread and link_bps must be > 0 and "
                              f"overhead_s >= 0")
        if (self.host is None) != (self.host_cores is None):
            raise InvalidPlan(f"server {self.name}: host and host_cores go together (got host={self.host!r}, "
                              f"host_cores={self.host_cores!r})")
        if self.host_cores is not None and self.host_cores <= 0:
            raise InvalidPlan(f"server {self.name}: host_cores must be > 0, got {self.host_cores}")

    @property
    def flops(self) -> float:
        """Computing rate of the whole zone, FLOPS."""
        return self.threads * self.flops_per_thread


@dataclass(frozen=True)
class Cloud:
    """The cloud running the fully connected layers: k_c (FLOPS) and the edge-cloud rate ra_c (bits/s)."""

    flops: float
    link_bps: float
    url: str | None = None
    overhead_s: float = 0.0
    conv_flops: float | None = None  # rate on conv and pool layers (a DADS cut runs them here), if known

    def __post_init__(self) -> None:
        if self.flops <= 0 or self.link_bps <= 0 or self.overhead_s < 0:
            raise InvalidPlan("cloud: flops and link_bps must be > 0 and overhead_s >= 0")
        if self.conv_flops is not None and self.conv_flops <= 0:
            raise InvalidPlan("cloud: conv_flops must be > 0")

    def layer_rate(self, layer: object) -> float:
        """FLOPS on one layer: ``flops`` for a fully connected layer (memory-bound at batch 1), else
        ``conv_flops`` when known (compute-bound convs run several times faster per core)."""
        from edgesplit.models.spec import Linear

        return self.flops if isinstance(layer, Linear) or self.conv_flops is None else self.conv_flops


@dataclass(frozen=True)
class Cluster:
    """Edge servers (index = position), the cloud, and the deployed model names."""

    servers: tuple[Server, ...]
    cloud: Cloud
    models: tuple[str, ...] = field(default_factory=tuple)
    controller_overhead_s: float = 0.0  # per task at co1: API, queue, Redis, result (not in the paper)
    profiles: tuple[SliceProfile, ...] = ()  # measured slice efficiency per model (split.profile)
    fanout_s: tuple[tuple[int, float], ...] = ()  # (requests in a stage, seconds): module docstring

    def fanout(self, requests: int) -> float:
        """Seconds a stage of ``requests`` requests costs beyond its slowest server (:func:`fanout_at`)."""
        return fanout_at(self.fanout_s, requests)

    def profile(self, model: str) -> SliceProfile | None:
        """The slice efficiency profile of ``model``, if the cluster file gives one."""
        return next((p for p in self.profiles if p.model == model), None)

    def __post_init__(self) -> None:
        if not self.servers:
            raise InvalidPlan("a cluster needs at least 1 edge server, got 0")
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise InvalidPlan(f"server names must be unique, got {names}")
        cores: dict[str, float | None] = {}
        for s in self.servers:
            if s.host is not None and cores.setdefault(s.host, s.host_cores) != s.host_cores:
                raise InvalidPlan(f"host {s.host!r} has {cores[s.host]} cores for one server and "
                                  f"{s.host_cores} for {s.name}")

    def hosts(self) -> dict[str, float]:
        """Cores of each named host (a fraction where a CPU quota allows less than one)."""
        return {s.host: s.host_cores for s in self.servers if s.host is not None and s.host_cores}

    def index(self, server: int | str) -> int:
        """Index of a server given by index or name; InvalidPlan if there is none."""
        if isinstance(server, int):
            if not 0 <= server < len(self.servers):
                raise InvalidPlan(f"server index {server} is not in [0, {len(self.servers)})")
            return server
        for i, s in enumerate(self.servers):
            if s.name == server:
                return i
        raise InvalidPlan(f"no server named {server!r}; servers are {[s.name for s in self.servers]}")

    def take(self, count: int) -> Cluster:
        """The same cluster with only its first ``count`` servers."""
        if count < 1:
            raise InvalidPlan(f"the number of servers must be at least 1, got {count}")
        if count > len(self.servers):
            raise InvalidPlan(f"asked for {count} servers, the cluster has {len(self.servers)}")
        return replace(self, servers=self.servers[:count])


def scenario(name: str, seed: int = 0, servers: int = PAPER_SERVERS,
             models: Sequence[str] = ("alexnet-paper", "vgg16-paper")) -> Cluster:
    """A named scenario (``paper`` or ``edge-1g``, see the module docstring); links drawn with ``seed``."""
    if name not in SCENARIOS:
        raise InvalidInput(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)} or a "
                           "cluster YAML file")
    if servers < 1:
        raise InvalidPlan(f"the number of servers must be at least 1, got {servers}")
    rng = random.Random(seed)
    edge_links = [rng.uniform(*PAPER_EDGE_LINK_BPS) for _ in range(servers)]
    cloud_link = rng.uniform(*PAPER_CLOUD_LINK_BPS)
    overhead = 0.0
    if name == "edge-1g":
        edge_links = [EDGE_1G_LINK_BPS] * servers
        overhead = EDGE_1G_OVERHEAD_S
    nodes = tuple(Server(f"ex{m}", PAPER_THREADS, PAPER_FLOPS_PER_THREAD, link, overhead_s=overhead)
                  for m, link in enumerate(edge_links))
    return Cluster(nodes, Cloud(PAPER_CLOUD_FLOPS, cloud_link, overhead_s=overhead), tuple(models))


def resolve_cluster(name_or_path: str, seed: int = 0, servers: int | None = None) -> Cluster:
    """A named scenario, or a cluster YAML file; ``servers`` keeps only the first ``servers`` of it."""
    if name_or_path in SCENARIOS:
        return scenario(name_or_path, seed, PAPER_SERVERS if servers is None else servers)
    if not Path(name_or_path).exists():  # a folder or a device is the file reader's error (one line)
        raise InvalidInput(f"unknown scenario {name_or_path!r}: not one of {', '.join(SCENARIOS)} "
                           "and no such cluster file")
    cluster = load_cluster(name_or_path)
    return cluster if servers is None else cluster.take(servers)


class _ExecutorModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    url: str | None = None
    threads: PositiveInt
    flops_per_thread: PositiveFloat | None = None
    link_bps: PositiveFloat = DEFAULT_LINK_BPS
    overhead_s: float = Field(default=0.0, ge=0)
    host: str | None = Field(default=None, min_length=1)


class _HostModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cores: PositiveFloat
    cpu_period_s: PositiveFloat | None = None


class _CloudModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    flops: PositiveFloat = PAPER_CLOUD_FLOPS
    conv_flops: PositiveFloat | None = None
    link_bps: PositiveFloat = DEFAULT_LINK_BPS
    overhead_s: float = Field(default=0.0, ge=0)


class _ControllerModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overhead_s: float = Field(default=0.0, ge=0)
    fanout_s: dict[Annotated[int, Field(ge=2, le=1024)], Annotated[float, Field(ge=0)]] = \
        Field(default_factory=dict)


class _ClusterModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    executors: list[_ExecutorModel] = Field(min_length=1)
    controller: _ControllerModel = Field(default_factory=_ControllerModel)
    cloud: _CloudModel = Field(default_factory=_CloudModel)
    models: list[str] = Field(default_factory=list)
    hosts: dict[str, _HostModel] = Field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)


def fanout_at(points: Sequence[tuple[int, float]], requests: int) -> float:
    """A stage's fan-out cost for ``requests`` requests from measured ``(n, seconds)`` points: 0 for
    one request or none measured, linear between points (from 0 at one request), the last segment's
    slope beyond the last point. Not in the paper, whose latency model sends a stage's requests in
    parallel at no cost."""
    if requests <= 1 or not points:
        return 0.0
    known = [(1, 0.0), *sorted((n, s) for n, s in points if n > 1)]
    for (n0, s0), (n1, s1) in itertools.pairwise(known):
        if requests <= n1:
            return s0 + (s1 - s0) * (requests - n0) / (n1 - n0)
    (n0, s0), (n1, s1) = known[-2], known[-1]
    return max(0.0, s1 + (s1 - s0) * (requests - n1) / (n1 - n0))


def cluster_from_dict(raw: Mapping[str, Any], where: str = "cluster") -> Cluster:
    """Parse a cluster description (the ``cluster.yaml`` layout); InvalidInput names the bad field."""
    try:
        parsed = _ClusterModel.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise InvalidInput(f"{where}: {loc}: {err['msg']}") from e
    for i, ex in enumerate(parsed.executors):
        if ex.host is not None and ex.host not in parsed.hosts:
            listed = ", ".join(parsed.hosts) or "none"
            raise InvalidInput(f"{where}: executors.{i}.host: host {ex.host!r} is not listed under 'hosts' "
                               f"(listed: {listed}); expected hosts: {{{ex.host}: {{cores: N}}}}")
    servers = tuple(
        Server(name=ex.name or f"ex{i}", threads=ex.threads,
               flops_per_thread=ex.flops_per_thread or DEFAULT_FLOPS_PER_THREAD, link_bps=ex.link_bps,
               url=ex.url, overhead_s=ex.overhead_s, flops_known=ex.flops_per_thread is not None,
               host=ex.host, host_cores=None if ex.host is None else parsed.hosts[ex.host].cores,
               host_period_s=None if ex.host is None else parsed.hosts[ex.host].cpu_period_s)
        for i, ex in enumerate(parsed.executors))
    c = parsed.cloud
    try:
        cloud = Cloud(c.flops, c.link_bps, c.url, c.overhead_s, c.conv_flops)
        profiles = tuple(SliceProfile.from_dict(model, raw) for model, raw in parsed.profiles.items())
        return Cluster(servers, cloud, tuple(parsed.models), parsed.controller.overhead_s, profiles,
                       tuple(sorted(parsed.controller.fanout_s.items())))
    except InvalidPlan as e:
        raise InvalidInput(f"{where}: {e}") from e


def cluster_to_dict(cluster: Cluster) -> dict[str, Any]:
    """The ``cluster.yaml`` layout of a cluster (inverse of ``cluster_from_dict``)."""
    executors = [{"name": s.name, "url": s.url, "threads": s.threads,
                  "flops_per_thread": s.flops_per_thread if s.flops_known else None,
                  "link_bps": s.link_bps, "overhead_s": s.overhead_s, **({"host": s.host} if s.host else {})}
                 for s in cluster.servers]
    c = cluster.cloud
    cloud = {"url": c.url, "flops": c.flops, "link_bps": c.link_bps, "overhead_s": c.overhead_s,
             **({"conv_flops": c.conv_flops} if c.conv_flops is not None else {})}
    out: dict[str, Any] = {"executors": executors, "cloud": cloud, "models": list(cluster.models)}
    if cluster.controller_overhead_s or cluster.fanout_s:
        out["controller"] = {"overhead_s": cluster.controller_overhead_s,
                             **({"fanout_s": dict(cluster.fanout_s)} if cluster.fanout_s else {})}
    if cluster.profiles:
        out["profiles"] = {p.model: p.to_dict() for p in cluster.profiles}
    if cluster.hosts():
        periods = {s.host: s.host_period_s for s in cluster.servers if s.host is not None and s.host_period_s}
        out["hosts"] = {name: {"cores": cores, **({"cpu_period_s": periods[name]} if name in periods else {})}
                        for name, cores in cluster.hosts().items()}
    return out


def read_yaml_mapping(path: Path, what: str, key: str) -> dict[str, Any]:
    """A YAML (or JSON) file that must hold a mapping with ``key``; InvalidInput (one line) naming
    ``what`` and the file when it cannot be read as text (``edgesplit.errors.read_user_text``), is not
    valid YAML or not a mapping (cluster files, testbed descriptions)."""
    text = read_user_text(path, what, "YAML")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InvalidInput(f"{what} {path} is not valid YAML{where}: {problem}") from e
    if not isinstance(raw, dict):
        raise InvalidInput(f"{what} {path}: expected a mapping with '{key}', got {type(raw).__name__}")
    return raw


def load_cluster(path: str | Path) -> Cluster:
    """Read a ``cluster.yaml``; InvalidInput with the file name for a missing, unreadable or bad file."""
    p = Path(path)
    return cluster_from_dict(read_yaml_mapping(p, "cluster file", "executors"), where=f"cluster file {p}")


def dump_cluster(cluster: Cluster, path: str | Path) -> None:
    """Write a cluster as ``cluster.yaml``."""
    Path(path).write_text(yaml.safe_dump(cluster_to_dict(cluster), sort_keys=False))
