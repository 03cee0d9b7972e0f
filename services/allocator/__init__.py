"""The allocator (controller co2): re-plans splits and sub-zone quotas from measurements.

``create_app(settings)`` in :mod:`services.allocator.app`; ``python -m services.allocator`` serves it;
the control loop is :class:`services.allocator.loop.Controller`.
"""
