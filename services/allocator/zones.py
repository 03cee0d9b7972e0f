"""Each model's resource zones (paper section 3.2, step 1) as the cluster that model plans on."""

from __future__ import annotations

from collections.abc import Mapping

from edgesplit.alloc.zones import zone_clusters as _zone_clusters
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster


def zone_clusters(cluster: Cluster, specs: Mapping[str, ModelSpec]) -> dict[str, Cluster]:
    """``{model: cluster}`` with each server's zone for that model (``edgesplit.alloc.zones``: the rule
    the orchestrator's local plans use too)."""
    return _zone_clusters(cluster, list(specs.values()))
