"""The plans the allocator published: ``{prefix}plan:{model}`` in Redis, versioned.

The orchestrator reads ``plan:{model}`` between tasks and takes a plan whose ``version`` is above
the one it runs. A plan is published with version = (the larger of Redis's and ours) + 1, so a
restarted allocator, or one sharing Redis with an older one, still moves the version forward; a plan
whose stages did not change is not published again while Redis holds our version of it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace

import redis.asyncio as aioredis

from edgesplit.plan.planner import Plan
from services.allocator.decide import units_per_server
from services.allocator.metrics import AllocatorMetrics
from services.common.channels import plan_key

log = logging.getLogger("edgesplit.allocator")


class PlanStore:
    """The newest published plan and version of every model."""

    def __init__(self, redis: aioredis.Redis, prefix: str, metrics: AllocatorMetrics) -> None:
        self.redis = redis
        self.prefix = prefix
        self.metrics = metrics
        self.plans: dict[str, Plan] = {}
        self.versions: dict[str, int] = {}
        self.changed_at = float("-inf")  # time.monotonic() of the last publish

    async def publish(self, model: str, plan: Plan, served: str) -> int | None:
        """Publish ``plan`` with the next version unless Redis already holds it; the version, or None
        when nothing was published (unchanged, or Redis failed)."""
        key = plan_key(self.prefix, model)
        try:
            raw = await self.redis.get(key)
            current = int(json.loads(raw).get("version", 0)) if raw else 0
            old = self.plans.get(model)
            if old is not None and old.stages == plan.stages and current == self.versions.get(model):
                return None
            version = max(current, self.versions.get(model, 0)) + 1
            plan = replace(plan, version=version)
            body = {**plan.to_dict(), "source": "allocator", "served": served, "time": time.time()}
            await self.redis.set(key, json.dumps(body))
        except (aioredis.RedisError, OSError, ValueError) as e:
            log.warning("cannot publish the plan of %s: %s", model, e)
            return None
        self.plans[model] = plan
        self.versions[model] = version
        self.changed_at = time.monotonic()
        self.metrics.version.labels(model).set(version)
        self.metrics.published.labels(model).inc()
        log.info("plan of %s: version %d (%s), units %s", model, version, served, units_per_server(plan))
        return version
