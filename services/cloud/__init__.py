"""The cloud service: the fully connected layers of every deployed CNN (features in, logits out).

``create_app(settings)`` in :mod:`services.cloud.app`; ``python -m services.cloud`` serves it;
:class:`services.cloud.client.CloudClient` calls it.
"""
