"""Each model's resource zones (paper section 3.2, step 1) as the cluster that model plans on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from edgesplit.alloc.zones import zone_sizes
from edgesplit.errors import InvalidPlan
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster


def zone_clusters(cluster: Cluster, specs: Mapping[str, ModelSpec]) -> dict[str, Cluster]:
    """``{model: cluster}`` where each server's ``threads`` is that model's zone on it
    (``edgesplit.alloc.zones``: FLOPs share, at least one thread per conv). A server with fewer threads
    than all the models' convs together gives every model all its threads (the zones overlap; the
    planner then uses its own grouping), as the orchestrator does for its local plans."""
    names = list(specs)
    if len(names) == 1:
        return {names[0]: cluster}
    rows = []
    for s in cluster.servers:
        try:
            rows.append(zone_sizes([specs[n] for n in names], s.threads))
        except InvalidPlan:
            rows.append([s.threads] * len(names))
    return {n: replace(cluster, servers=tuple(replace(s, threads=rows[m][j])
                                              for m, s in enumerate(cluster.servers)))
            for j, n in enumerate(names)}
