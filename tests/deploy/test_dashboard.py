"""The Grafana dashboard of the chart (``grafana.dashboard.enabled``, opt-in): a ConfigMap for Grafana's
sidecar holding valid dashboard JSON, whose every query names metrics the services really export
(read from their Prometheus registries), and which covers what an operator watches."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import CollectorRegistry

from tests.deploy import support
from tests.deploy.conftest import Renderer

CI_FILE = support.CHART / "ci" / "ingress-locust-values.yaml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
PROMQL_WORDS = {"sum", "max", "min", "by", "on", "rate", "increase", "histogram_quantile", "label_values",
                "le", "model", "priority", "stage", "server", "instance", "served", "reason", "trigger",
                "job", "handler", "status"}


def _names(registry: CollectorRegistry) -> set[str]:
    return {m.name + suffix for m in registry.collect() for suffix in SUFFIXES.get(m.type, ("",))}


def exported_metrics() -> set[str]:
    """Every sample name the four services can export (their registries, empty ones included)."""
    from services.allocator.metrics import AllocatorMetrics
    from services.cloud.app import CloudState
    from services.cloud.settings import CloudSettings
    from services.executor.app import ExecutorState
    from services.executor.settings import ExecutorSettings
    from services.orchestrator.metrics import Metrics

    names = set()
    small = {"models": "digits-cnn", "threads": 1}
    for registry in (Metrics().registry, AllocatorMetrics().registry,
                     ExecutorState(ExecutorSettings.model_validate(small)).metrics.registry,
                     CloudState(CloudSettings.model_validate(small)).registry):
        names |= _names(registry)
    return names | {"http_requests_total", "http_request_duration_seconds_bucket"}


def _dashboard(rendered: Renderer) -> tuple[support.Obj, dict[str, Any]]:
    (cm,) = [o for o in rendered(CI_FILE) if o["kind"] == "ConfigMap" and support.component(o) == "dashboard"]
    return cm, json.loads(cm["data"]["edgesplit.json"])


def test_dashboard_is_opt_in(rendered: Renderer) -> None:
    assert not [o for o in rendered(None) if support.component(o) == "dashboard"]


def test_configmap_carries_the_sidecar_label_and_folder(rendered: Renderer) -> None:
    cm, dash = _dashboard(rendered)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "edgesplit"
    assert dash["uid"] == "edgesplit-overview" and dash["panels"]


def test_every_query_names_exported_metrics_and_the_operator_views_are_there(rendered: Renderer) -> None:
    _, dash = _dashboard(rendered)
    exported = exported_metrics()
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for expr in exprs:
        metrics = {w for w in re.findall(r"\b([a-z_][a-z0-9_]*)\b(?=\s*[{\[)])", expr)} - PROMQL_WORDS
        metrics |= set(re.findall(r"\b(?:edgesplit|http)_[a-z0-9_]+", expr))
        assert metrics and metrics <= exported, f"{expr}: {sorted(metrics - exported)} not exported"
    titles = " | ".join(p["title"].lower() for p in dash["panels"])
    for view in ("queue depth per priority", "stage latency", "batch size", "executor utilisation",
                 "allocations served"):
        assert view in titles, view
