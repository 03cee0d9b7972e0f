"""Cluster description, latency model (eq. 1-5), split ratios (eq. 7, Algorithm 1, optimal) and planner."""

from edgesplit.plan.cluster import (
    SCENARIOS,
    Cloud,
    Cluster,
    Server,
    dump_cluster,
    load_cluster,
    resolve_cluster,
    scenario,
)
from edgesplit.plan.latency import LatencyBreakdown, ServerTime, StageLatency, predict, server_times
from edgesplit.plan.planner import SPLITS, Plan, StagePlan, make_plan

__all__ = [
    "SCENARIOS",
    "SPLITS",
    "Cloud",
    "Cluster",
    "LatencyBreakdown",
    "Plan",
    "Server",
    "ServerTime",
    "StageLatency",
    "StagePlan",
    "dump_cluster",
    "load_cluster",
    "make_plan",
    "predict",
    "resolve_cluster",
    "scenario",
    "server_times",
]
