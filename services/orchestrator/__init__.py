"""The orchestrator (controller co1): Redis priority queues, per-model pipelines, merge, public API.

``create_app(settings)`` in :mod:`services.orchestrator.app`; ``python -m services.orchestrator``
serves it (settings from ``EDGESPLIT_ORCHESTRATOR_*``).
"""
