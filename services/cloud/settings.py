"""Settings of the cloud service, read from ``EDGESPLIT_CLOUD_*`` variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class CloudSettings(ServiceSettings):
    """All knobs of the cloud service (see :class:`ServiceSettings` for the shared ones).

    Requests are computed one at a time in arrival order, each with ``threads`` torch threads.
    ``max_batch`` bounds the images of one request.
    """

    model_config = SettingsConfigDict(env_prefix="EDGESPLIT_CLOUD_", extra="ignore")

    port: int = Field(8200, ge=1, le=65535)
    max_batch: int = Field(256, ge=1, le=65536)
