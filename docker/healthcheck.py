#!/usr/bin/env python3
"""Docker HEALTHCHECK of the edgesplit image: exit 0 when the role's ``/v2/health/ready`` answers 200.

The role and its port are read from the main process (PID 1, which the entrypoint ``exec``s into
``python -m services.<role>`` with ``EDGESPLIT_<ROLE>_PORT`` set): ``/proc/1/cmdline`` and
``/proc/1/environ``. ``edgesplit-healthcheck PORT`` checks a given port; ``--live`` checks liveness
instead of readiness. Standard library only, so it costs no import of the service's dependencies.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

ROLES = ("executor", "cloud", "orchestrator", "allocator")
DEFAULT_PORTS = {"orchestrator": 8080, "executor": 8000, "cloud": 8000, "allocator": 8000}


def _main_process() -> tuple[list[str], dict[str, str]]:
    """Command line and environment of PID 1 (empty when unreadable)."""
    try:
        argv = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
        raw = Path("/proc/1/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return [], {}
    env = dict(item.split("=", 1) for item in raw if "=" in item)
    return argv, env


def ports_to_check(argv: list[str]) -> list[int]:
    """The port given on the command line, else the running role's port, else every default port."""
    ports = [int(a) for a in argv if a.isdigit()]
    if ports:
        return ports
    cmdline, env = _main_process()
    for role in ROLES:
        if f"services.{role}" in cmdline:
            return [int(env.get(f"EDGESPLIT_{role.upper()}_PORT", DEFAULT_PORTS[role]))]
    return sorted(set(DEFAULT_PORTS.values()))


def healthy(port: int, path: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET http://127.0.0.1:{port}{path}`` answers 200 within ``timeout_s`` seconds."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    path = "/v2/health/live" if "--live" in argv else "/v2/health/ready"
    return 0 if any(healthy(port, path) for port in ports_to_check(argv)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
