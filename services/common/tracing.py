"""OpenTelemetry tracing across the services, off by default (``trace_exporter = none``).

When a service's ``trace_exporter`` is ``otlp`` (OTLP over HTTP to ``trace_endpoint``) or ``console``
(one JSON span per line on stdout, i.e. the service's log), :func:`trace_app` installs a tracer
provider for the process (service name ``edgesplit-<role>``, parent-based sampling at
``trace_sample_ratio``) and FastAPI's instrumentation: every request is a server span named by its
route template, continuing the caller's W3C ``traceparent``. The internal clients
(``services.common.http.ServiceClient``) send the current context as ``traceparent``, so one task is
one trace: the orchestrator's stage and slice spans (``services.orchestrator.engine``), each
executor's slice request under its slice span, the cloud's request under the cloud span.

A task is traced under the V2 request that queued it when that request ran in this process
(:func:`remember_task`); otherwise (a v1 submit, another replica) under a trace whose id is derived
from the task id, so all spans of one task still share one trace.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import sys
import threading
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

if TYPE_CHECKING:
    from services.common.settings import ServiceSettings

TraceExporter = Literal["none", "console", "otlp"]
TRACER = trace.get_tracer("edgesplit")
"""The tracer every service uses; a no-op until :func:`trace_app` installs a provider."""
MAX_REMEMBERED = 10_000
log = logging.getLogger("edgesplit.tracing")

_tasks: collections.OrderedDict[str, otel_context.Context] = collections.OrderedDict()
_tasks_lock = threading.Lock()
_configured: list[str] = []  # the role whose provider this process installed (at most one)


def trace_app(app: FastAPI, role: str, settings: ServiceSettings) -> None:
    """Trace ``app`` with the service's ``trace_*`` settings (module docstring); nothing at all when
    ``trace_exporter`` is ``none``."""
    if settings.trace_exporter == "none":
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    if not _configured:
        _install_provider(role, settings.name, settings.trace_exporter, settings.trace_endpoint,
                          settings.trace_sample_ratio)
        _configured.append(role)
    elif _configured[0] != role:
        log.warning("tracing already set up for %s in this process; %s shares it", _configured[0], role)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=trace.get_tracer_provider(),
                                       excluded_urls="/metrics,/v2/health/live,/v2/health/ready")


def _install_provider(role: str, name: str, exporter: TraceExporter, endpoint: str, ratio: float) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"edgesplit-{role}", "service.instance.id": name}),
        sampler=ParentBased(TraceIdRatioBased(ratio)))
    out: SpanExporter
    if exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        out = ConsoleSpanExporter(out=sys.stdout,
                                  formatter=lambda span: span.to_json(indent=None) + os.linesep)
        provider.add_span_processor(SimpleSpanProcessor(out))  # written as each span ends
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    log.info("tracing on: %s exporter%s, sample ratio %g", exporter,
             f" to {endpoint}" if exporter == "otlp" else "", ratio)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context (``traceparent``, ``tracestate``) to outgoing ``headers``."""
    propagate.inject(headers)


def remember_task(task_id: str) -> None:
    """The current context (the request that queued the task) becomes the task's parent context."""
    if not trace.get_current_span().get_span_context().is_valid:
        return
    with _tasks_lock:
        _tasks[task_id] = otel_context.get_current()
        while len(_tasks) > MAX_REMEMBERED:
            _tasks.popitem(last=False)


def task_context(task_id: str) -> otel_context.Context:
    """The context a task's spans start from: the queuing request's, else a trace named by the task."""
    with _tasks_lock:
        ctx = _tasks.get(task_id)
    if ctx is not None:
        return ctx
    digest = hashlib.sha256(task_id.encode()).digest()
    parent = SpanContext(trace_id=int.from_bytes(digest[:16], "big") or 1,
                         span_id=int.from_bytes(digest[16:24], "big") or 1,
                         is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent))


def forget_task(task_id: str) -> None:
    with _tasks_lock:
        _tasks.pop(task_id, None)
