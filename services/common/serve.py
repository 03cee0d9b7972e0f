"""Start a service with uvicorn from its settings class; invalid settings exit with status 2."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from services.common.httpguard import HttpLimits, guarded_protocol
from services.common.listen import inherited_socket
from services.common.settings import ServiceSettings

S = TypeVar("S", bound=ServiceSettings)
SECRETS_DIR = Path("/run/edgesplit")


def serve(settings_cls: type[S], create_app: Callable[[], Callable[[S], FastAPI]]) -> None:
    """Read the settings from the environment, build the app, run uvicorn until stopped.

    ``create_app`` returns the app factory: the app's heavy imports (torch) wait until the settings
    are known to be valid, so bad settings fail in well under a second.
    """
    # Idle OpenMP threads spin briefly, then sleep. Not the default spin (300000 rounds, ~17 ms): the
    # services share cores (several pods on a node, or the whole local stack on one machine), and a
    # process spinning after its slice slowed the next stage's process (the cloud's FC layers by
    # 3-4 ms). Not OMP_WAIT_POLICY=PASSIVE either (the setting until 2026-11-30): a team whose idle
    # threads sleep at once lost its second core after every idle gap, because each of a forward's
    # parallel regions then waited for a halted CPU to wake: alexnet-paper's edge part at 2 threads
    # took 33 ms after a 50 ms gap against 18 ms with a short spin (docs/BENCHMARKS.md). 30000 rounds
    # bridge the gaps between one forward's regions and stop soon after it. Read once, when torch
    # loads its OpenMP runtime, so it is set before the app (and torch) is imported.
    os.environ.setdefault("GOMP_SPINCOUNT", "30000")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # from the environment, and from files named like the variables in SECRETS_DIR when it exists
        # (docker compose's generated tokens, ``services.tokens``); a variable wins over a file
        extra = {"_secrets_dir": SECRETS_DIR} if SECRETS_DIR.is_dir() else {}
        settings = settings_cls(**extra)  # type: ignore[arg-type]
    except ValidationError as e:
        prefix = settings_cls.model_config.get("env_prefix", "")
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            field = f"{prefix}{where.upper()}: " if where else ""
            print(f"{settings_cls.__name__}: {field}{err['msg']}", file=sys.stderr)
        sys.exit(2)
    logging.getLogger().setLevel(settings.log_level.upper())
    limits = HttpLimits(settings.header_timeout_s, settings.body_timeout_s, settings.max_header_bytes,
                        settings.max_headers)
    config = uvicorn.Config(create_app()(settings), host=settings.host, port=settings.port,
                            log_level=settings.log_level, access_log=settings.access_log,
                            timeout_graceful_shutdown=5, http=guarded_protocol(limits))
    handed = inherited_socket(settings.host, settings.port)  # the port its launcher bound for it
    uvicorn.Server(config).run(sockets=None if handed is None else [handed])
