"""The edge executor: an edge server pod computing conv slices with per-conv sub-zone worker pools.

``create_app(settings)`` in :mod:`services.executor.app`; ``python -m services.executor`` serves it;
:class:`services.executor.client.ExecutorClient` calls it.
"""
