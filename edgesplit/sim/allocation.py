"""Sub-zone threads for the split methods, from the allocation package (``edgesplit.alloc.allocate``).

"Ours (paper)" takes its sub-zones from the shipped TD3 policy when one ships for the model,
otherwise from the exact allocator on the paper's kernel-rows split, and says which. "Ours
(edgesplit)" takes the exact allocator's sub-zones on its own split family. Results are cached per
(model, cluster): an allocation takes about a second.
"""

from __future__ import annotations

from functools import cache

from edgesplit.errors import ModelNotFound
from edgesplit.models.spec import ModelSpec
from edgesplit.plan.cluster import Cluster

ThreadTable = list[list[int]]


@cache
def exact_threads(spec: ModelSpec, cluster: Cluster, split: str) -> tuple[ThreadTable, str]:
    """threads[g][m] of the exact allocator (objective: the sum of the stage latencies, eq. 6)."""
    from edgesplit.alloc.allocate import allocate

    report = allocate(spec, cluster.servers, "exact", split=split)  # type: ignore[arg-type]
    proven = "optimal" if report.optimum_s is not None else f"within {100 * report.gap:.2f}% of its bound"
    return report.threads_by_stage(), f"exact allocator ({report.method}, {proven})"


@cache
def paper_threads(spec: ModelSpec, cluster: Cluster) -> tuple[ThreadTable, str]:
    """(threads[g][m] per conv g and server m, a note saying where they come from)."""
    from edgesplit.alloc.allocate import allocate

    try:
        report = allocate(spec, cluster.servers, "td3", split="paper")
    except ModelNotFound:
        table, note = exact_threads(spec, cluster, "paper")
        return table, f"no shipped TD3 policy for {spec.name}: fell back to the {note}"
    return report.threads_by_stage(), (f"shipped TD3 policy ({100 * report.gap:.1f}% above the exact "
                                       "allocator's bound)")
