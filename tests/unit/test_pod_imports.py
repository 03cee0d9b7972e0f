"""What a pod runs (``python -m services.<role>``: its ``__main__`` and ``create_app``) imports no
tooling: no launcher, benchmark, demo workload, load test or CLI (STYLE.md, "Tooling")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ROLES = ("executor", "cloud", "orchestrator", "allocator")
# the tooling packages and the core's CLI
TOOLING = ("tooling", "loadtest", "edgesplit.cli")


def _imported(role: str) -> list[str]:
    """Every module in ``sys.modules`` after a fresh interpreter imports the role's entry point and app."""
    code = (f"import json, sys; import services.{role}.__main__, services.{role}.app; "
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          check=True)
    return list(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("role", ROLES)
def test_a_pod_imports_no_tooling(role: str) -> None:
    modules = _imported(role)
    assert f"services.{role}.app" in modules
    leaked = [m for m in modules if any(m == t or m.startswith(t + ".") for t in TOOLING)]
    assert leaked == [], f"services.{role} imports tooling: {leaked}"
