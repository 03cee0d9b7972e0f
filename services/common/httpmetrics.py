"""Standard HTTP request metrics for every service (prometheus-fastapi-instrumentator).

``http_requests_total{handler, method, status}`` (counter) and
``http_request_duration_seconds{handler, method, status}`` (histogram), where ``handler`` is the
route template (``/v1/tasks/{task_id}``, never the id itself; ``none`` for paths no route matches,
so a scan of random URLs cannot blow up the label set) and ``status`` the exact code. They go into
the service's own registry, next to its ``edgesplit_<service>_*`` metrics, on its ``/metrics``.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator, metrics

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def instrument_http(app: FastAPI, registry: CollectorRegistry) -> None:
    """Count and time every request of ``app`` into ``registry`` (module docstring)."""
    instrumentator = Instrumentator(should_group_status_codes=False, should_group_untemplated=True,
                                    registry=registry)
    instrumentator.add(metrics.requests(registry=registry))
    instrumentator.add(metrics.latency(buckets=DURATION_BUCKETS, registry=registry))
    instrumentator.instrument(app)
