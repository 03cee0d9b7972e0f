"""What more than one service shares by name: Redis keys and streams, and the executors' quota owners.

Spelled here once; every service imports these instead of formatting the names itself.

Redis (every key under the deployment's prefix, default ``es:``):

* ``plan:{model}``: STRING, the current plan of a model as JSON with a ``version``; written by the
  allocator (``services/allocator/plans.py``), read by the orchestrator (``services/orchestrator``);
* ``xfer:{executor}``: STREAM, one entry per slice the orchestrator sent to that executor (``bytes``,
  ``transfer_s``, ``compute_s``...), written by ``services/orchestrator/xfer.py``, read by the
  allocator's link measurement (``services/allocator/measure.py``).

The queue's own keys (``q:``, ``task:``, ``inflight:``... ``services/orchestrator/scripts.py``) are
the orchestrator's alone: its replicas share them through the same code.

Quota owners: an executor's sub-zone quotas (``PUT /v1/quotas/{owner}``) are kept in one namespace
per writer, so one writer never overwrites another's (``services/executor/pool.py``). A model's entry
in force is that of the first owner of :data:`QUOTA_OWNERS` holding one.
"""

from __future__ import annotations

from typing import Final

PLAN: Final = "plan"
XFER: Final = "xfer"

#: A deployment's key prefix: letters, digits and ``_ . : -`` only. No glob character (``* ? [ ] \``):
#: the queue's purge, a stack's clean-up and ``testbed down`` find keys with ``SCAN MATCH <prefix>*``,
#: so ``*`` as a prefix would reach every other deployment's keys in the same Redis.
PREFIX_PATTERN: Final = r"^[A-Za-z0-9_.:-]{1,64}$"

#: The allocator service (co2): the models whose plans it publishes under ``plan:{model}``.
QUOTA_ALLOCATOR: Final = "allocator"
#: An orchestrator: the models it plans itself (no plan in Redis).
QUOTA_ORCHESTRATOR: Final = "orchestrator"
#: A person or tool: the plain ``PUT /v1/quotas``, which replaces every namespace.
QUOTA_OPERATOR: Final = "operator"
#: Every quota owner, by precedence (the first holding a model's entry sets it).
QUOTA_OWNERS: Final = (QUOTA_ALLOCATOR, QUOTA_ORCHESTRATOR, QUOTA_OPERATOR)


def plan_key(prefix: str, model: str) -> str:
    """``{prefix}plan:{model}``: the model's current plan (JSON with a ``version``)."""
    return f"{prefix}{PLAN}:{model}"


def xfer_stream(prefix: str, executor: str) -> str:
    """``{prefix}xfer:{executor}``: the transfer records of the slices sent to that executor."""
    return f"{prefix}{XFER}:{executor}"
