"""Plans become executor quotas: one rule for the orchestrator (its own plans) and the allocator.

Stage k of a model's plan runs on sub-zone k of every executor taking part in it, with the stage's
threads on that executor; an executor gets a quota only for the stages it takes part in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from edgesplit.plan.latency import StageLike
from edgesplit.type_aliases import Quotas


def plan_quotas(stages: Mapping[str, Sequence[StageLike]], servers: Collection[int]) -> dict[int, Quotas]:
    """Sub-zone threads ``{server: {model: {stage: threads}}}`` of every model's ``stages`` (model ->
    its stages in order), for the server indices in ``servers`` (others are left out)."""
    out: dict[int, Quotas] = {m: {} for m in servers}
    for model, plan in stages.items():
        for k, st in enumerate(plan):
            for m, threads in zip(st.servers, st.threads, strict=True):
                if m in out:
                    out[m].setdefault(model, {})[k] = int(threads)
    return out
