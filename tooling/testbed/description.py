"""The testbed description: hosts, their CPU quotas and links (``edgesplit testbed up --file``).

A YAML or JSON file, checked against :class:`TestbedDescription` (unknown keys, missing keys, bad
values each give one line naming the field)::

    prefix: estb              # every link, namespace and cgroup made is named from this
    subnet: 10.251.77.0/24    # private /24: gateway .1, cloud .2, edge hosts .10, .11, ...
    cpu_period_ms: 10         # CFS period of every quota (see below)
    gateway: {port: 8080}     # orchestrator (+ allocator) in the root namespace; Redis at redis_url
    cloud: {cpus: 1.0, up_mbps: 100, down_mbps: 100}
    edges:
      - {cpus: 0.2, up_mbps: 1000, down_mbps: 1000}
      - {cpus: 0.2, up_mbps: 1000, down_mbps: 1000, threads: 5}
    models: [alexnet-paper]

``cpus`` is the host's CPU quota in cores (fractions allowed: 0.2 = a fifth of one core), enforced by
a cgroup (v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``). ``threads`` is the executor's zone (worker
threads); unset, it follows the quota as in a pod (``max(1, floor(cpus))``): a 0.2-core host is one
worker at a fifth of a core's speed. ``up_mbps`` is the host's sending rate, ``down_mbps`` its
receiving rate (a ``tbf`` qdisc on each end of its link). The period is 10 ms rather than the
kernel's (and Kubernetes') 100 ms: under a 100 ms period a burst runs at full speed until the
period's quota is spent, so a 41 ms job took 134 ms at 0.2 core where the quota predicts 206 ms; at
10 ms it took 210 ms (``../shared/DESIGN.md`` section 5). 5 ms (the shortest period whose 0.2-core
quota, 1 ms, the kernel accepts) was tried and measured worse: edgesplit at 8 hosts took 184 ms
against 161 ms at 10 ms, the paper's plan 258 against 186 (docs/BENCHMARKS.md, testbed).
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgesplit.errors import InvalidInput
from edgesplit.models import builtin_names
from edgesplit.plan.cluster import read_yaml_mapping

MAX_EDGES = 32
PREFIX_PATTERN = r"^[a-z][a-z0-9]{1,5}$"  # interface names are at most 15 bytes: "<prefix>-e31h"


def check_prefix(prefix: str) -> str:
    """``prefix`` when it is a testbed prefix (``PREFIX_PATTERN``), else InvalidInput. Every command and
    every removal checks it first: ``down`` kills the processes of the prefix's cgroups and removes its
    state folder, so an empty prefix, ``..`` or a glob must never reach them."""
    if not isinstance(prefix, str) or not re.fullmatch(PREFIX_PATTERN, prefix):
        raise InvalidInput(f"testbed prefix {str(prefix)[:40]!r}: expected 2 to 6 lowercase letters and "
                           f"digits, starting with a letter (e.g. estb)")
    return prefix


class HostLink(BaseModel):
    """A host's share of the machine: CPU quota (cores) and link rates each way (Mbit/s)."""

    model_config = ConfigDict(extra="forbid")
    cpus: float = Field(gt=0.0, le=64.0, description="CPU quota in cores (0.2 = a fifth of a core)")
    up_mbps: float = Field(1000.0, gt=0.0, le=100_000.0, description="host -> network rate, Mbit/s")
    down_mbps: float = Field(1000.0, gt=0.0, le=100_000.0, description="network -> host rate, Mbit/s")


class EdgeHost(HostLink):
    """An edge host: one executor; ``threads`` its zone (default: from the quota, as in a pod)."""

    threads: int | None = Field(None, ge=1, le=64)

    def zone(self) -> int:
        return self.threads if self.threads is not None else max(1, int(self.cpus))


class CloudHost(HostLink):
    """The cloud host (the fully connected layers); its link is the edge-cloud link."""

    cpus: float = Field(1.0, gt=0.0, le=64.0)
    up_mbps: float = Field(100.0, gt=0.0, le=100_000.0)
    down_mbps: float = Field(100.0, gt=0.0, le=100_000.0)


class Gateway(BaseModel):
    """The gateway: the orchestrator (and the allocator) on the bridge's address, and Redis."""

    model_config = ConfigDict(extra="forbid")
    port: int = Field(8080, ge=1, le=65535)
    redis_url: str = "redis://127.0.0.1:6379/0"


class TestbedDescription(BaseModel):
    """The whole testbed (module docstring)."""

    __test__ = False  # not a pytest test class, despite its name
    model_config = ConfigDict(extra="forbid")
    prefix: str = Field("estb", pattern=PREFIX_PATTERN)
    subnet: str = "10.251.77.0/24"
    cpu_period_ms: float = Field(10.0, ge=1.0, le=1000.0)
    gateway: Gateway = Field(default_factory=lambda: Gateway.model_validate({}))
    cloud: CloudHost = Field(default_factory=lambda: CloudHost.model_validate({}))
    edges: list[EdgeHost] = Field(min_length=1, max_length=MAX_EDGES)
    models: list[str] = Field(default_factory=lambda: ["alexnet-paper"], min_length=1)

    @field_validator("subnet")
    @classmethod
    def _private_24(cls, value: str) -> str:
        net = ipaddress.ip_network(value, strict=True)
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen != 24 or not net.is_private:
            raise ValueError(f"subnet {value!r}: expected a private IPv4 /24 such as 10.251.77.0/24")
        return value

    @field_validator("models")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return builtin_names(value)

    @model_validator(mode="after")
    def _fits(self) -> TestbedDescription:
        for name, host in [("cloud", self.cloud), *((f"edges.{i}", e) for i, e in enumerate(self.edges))]:
            if host.cpus * self.cpu_period_ms < 1.0:  # the kernel's smallest quota is 1 ms per period
                raise ValueError(f"{name}.cpus: {host.cpus} core of a {self.cpu_period_ms} ms period is "
                                 "under the kernel's 1 ms minimum quota; raise cpus or cpu_period_ms")
        return self

    # --- names and addresses -------------------------------------------------------------------

    def address(self, host: str) -> str:
        """The IPv4 address of ``gateway``, ``cloud`` or ``e<i>``."""
        base = ipaddress.ip_network(self.subnet).network_address
        offset = {"gateway": 1, "cloud": 2}.get(host)
        if offset is None:
            offset = 10 + int(host[1:])
        return str(base + offset)

    def hosts(self) -> list[str]:
        """Host names: ``cloud`` and ``e0``, ``e1``, ... (the gateway is the root namespace)."""
        return ["cloud", *(f"e{i}" for i in range(len(self.edges)))]

    def link(self, host: str) -> HostLink:
        return self.cloud if host == "cloud" else self.edges[int(host[1:])]


def uniform(edges: int, cpus: float = 0.2, edge_mbps: float = 1000.0, cloud_cpus: float = 1.0,
            cloud_mbps: float = 100.0, threads: int | None = None, **extra: Any) -> TestbedDescription:
    """``edges`` identical edge hosts (the benchmark's cluster: 0.2 core, 1 Gb/s; cloud at 100 Mb/s);
    InvalidInput names the first bad value, as for a description file."""
    edge = {"cpus": cpus, "up_mbps": edge_mbps, "down_mbps": edge_mbps, "threads": threads}
    return parse_description({"edges": [edge] * edges,
                              "cloud": {"cpus": cloud_cpus, "up_mbps": cloud_mbps, "down_mbps": cloud_mbps},
                              **extra}, "testbed")


def parse_description(raw: Any, where: str = "testbed description") -> TestbedDescription:
    """Validate a parsed description; InvalidInput names the first bad field."""
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected a mapping with 'edges', got {type(raw).__name__}")
    try:
        return TestbedDescription.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        raise InvalidInput(f"{where}: {loc}: {err['msg']}") from e


def load_description(path: Path) -> TestbedDescription:
    """Read a YAML (or JSON) description file."""
    raw = read_yaml_mapping(path, "testbed description", "edges")
    return parse_description(raw, f"testbed description {path}")


def description_schema() -> str:
    """The JSON schema of the description (``edgesplit testbed schema``)."""
    return json.dumps(TestbedDescription.model_json_schema(), indent=2)
