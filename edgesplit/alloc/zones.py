"""Resource zones (section 3.2, step 1): each server's threads shared among the deployed CNNs.

On every server, the zone of CNN j gets threads in proportion to its share of the total FLOPs of
all deployed CNNs (we count the edge FLOPs, the convs the zones run; the cloud part does not use
them), rounded by largest remainder, with at least one thread per conv of CNN j (each conv needs a
sub-zone of at least one thread, eq. 5d) and the zones summing to the server's threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from edgesplit.errors import InvalidPlan
from edgesplit.models import get_spec
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster
from edgesplit.split import conv_groups


def apportion_min(weights: Sequence[float], total: int, minimums: Sequence[int]) -> list[int]:
    """Integers ``z_j >= minimums[j]`` summing to ``total``, proportional to ``weights`` (largest
    remainder: start from the floors of the quotas, raise to the minimums, then take from the zones
    furthest above their quota or give to those furthest below it, one at a time)."""
    if len(weights) != len(minimums) or not weights:
        raise InvalidPlan("zones need one weight and one minimum per model, and at least one model")
    if sum(minimums) > total:
        raise InvalidPlan(f"{total} threads cannot give each model at least its number of convs "
                          f"({' + '.join(map(str, minimums))} = {sum(minimums)})")
    if min(weights) < 0:
        raise InvalidPlan(f"zone weights must be >= 0, got {list(weights)}")
    mass = sum(weights) or float(len(weights))
    quota = [total * (w if sum(weights) else 1.0) / mass for w in weights]
    out = [max(m, math.floor(q)) for q, m in zip(quota, minimums, strict=True)]
    while sum(out) > total:
        j = max((i for i in range(len(out)) if out[i] > minimums[i]), key=lambda i: (out[i] - quota[i], -i))
        out[j] -= 1
    while sum(out) < total:
        j = max(range(len(out)), key=lambda i: (quota[i] - out[i], -i))
        out[j] += 1
    return out


def zone_sizes(specs: Sequence[ModelSpec], threads: int) -> list[int]:
    """Zones of one server with ``threads`` threads, one per spec, in the specs' order."""
    return apportion_min([s.edge_flops() for s in specs], threads, [len(conv_groups(s)) for s in specs])


def server_zones(specs: Sequence[ModelSpec], threads: int) -> list[int]:
    """One server's zones, one per spec (section 3.2, step 1), the one rule the orchestrator, the
    allocator and the simulator use: the FLOPs share with at least one thread per conv (eq. 5d) where
    the server has that many (``zone_sizes``); else at least one thread per model (the planner then
    fuses convs into as many stages as the zone has threads); else, with fewer threads than models,
    every model all the threads (the zones overlap).

    The orchestrator used to keep one thread per model and the allocator one per conv, so they split
    8 threads between alexnet-paper and digits-cnn as [7, 1] and [6, 2]; on 6 threads the allocator
    overlapped the zones ([6, 6], quotas above the executor's capacity) where the orchestrator gave
    [5, 1]. The paper's rule wins where it fits, the non-overlapping split where it does not.
    """
    try:
        return zone_sizes(specs, threads)
    except InvalidPlan:
        pass
    if threads >= len(specs):
        return apportion_min([s.edge_flops() for s in specs], threads, [1] * len(specs))
    return [threads] * len(specs)


def zone_clusters(cluster: Cluster, specs: Sequence[ModelSpec]) -> dict[str, Cluster]:
    """``{model: cluster}``: each server's ``threads`` replaced by that model's zone on it
    (``server_zones``); one model keeps the cluster as it is."""
    if len(specs) == 1:
        return {specs[0].name: cluster}
    rows = [server_zones(specs, s.threads) for s in cluster.servers]
    return {spec.name: replace(cluster, servers=tuple(replace(s, threads=rows[m][j])
                                                      for m, s in enumerate(cluster.servers)))
            for j, spec in enumerate(specs)}


def zones(cluster: Cluster, models: Sequence[str] | None = None,
          specs: Sequence[ModelSpec] | None = None) -> dict[str, tuple[int, ...]]:
    """``{model: zone threads per server}`` for the deployed models (``cluster.models`` by default)."""
    if specs is None:
        names = list(cluster.models if models is None else models)
        if not names:
            raise InvalidPlan("no deployed models: give the models whose zones to compute")
        specs = [get_spec(n) for n in names]
    per_server = []
    for server in cluster.servers:
        try:
            per_server.append(zone_sizes(specs, server.threads))
        except InvalidPlan as e:
            raise InvalidPlan(f"server {server.name}: {e}") from e
    return {s.name: tuple(row[j] for row in per_server) for j, s in enumerate(specs)}
