"""The image recipe, checked without a Docker engine: hadolint and shellcheck, the build order that
keeps the dependency layer cached, a non-root runtime, the entrypoint's role dispatch and the
healthcheck against a real HTTP server on loopback."""

from __future__ import annotations

import fnmatch
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import support

DOCKER = support.ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
ENTRYPOINT = DOCKER / "entrypoint.sh"
HEALTHCHECK = DOCKER / "healthcheck.py"
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is missing from {BIN}: `make setup` installs it (pyproject dev extra)"
    return str(path)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for ins, args in _instructions():
        if ins == "FROM":
            current = []
            stages[args.split()[-1]] = current
        current.append((ins, args))
    return stages


def test_hadolint_passes() -> None:
    proc = subprocess.run([_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_passes() -> None:
    proc = subprocess.run(
        [_tool("shellcheck"), str(ENTRYPOINT), str(support.FETCH_HELM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_with_dependencies_before_source() -> None:
    stages = _stages()
    assert list(stages) == ["builder", "runtime"]
    steps = [f"{i} {a}" for i, a in stages["builder"]]
    torch = next(n for n, s in enumerate(steps) if "pip install" in s and "torch==" in s)
    deps = next(n for n, s in enumerate(steps) if "pip install -r requirements.txt" in s)
    source = next(n for n, s in enumerate(steps) if s.startswith("COPY edgesplit"))
    assert torch < deps < source, "torch, then the other dependencies, then the source"
    assert "--index-url https://download.pytorch.org/whl/cpu" in steps[torch]
    assert all(
        not s.startswith("COPY") or "pyproject.toml" in s or "requirements.py" in s for s in steps[:deps]
    )


def test_torch_pin_matches_pyproject() -> None:
    pinned = subprocess.run(
        [
            sys.executable,
            str(DOCKER / "requirements.py"),
            str(support.ROOT / "pyproject.toml"),
            "--torch-version",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (arg,) = [a for i, a in _instructions() if i == "ARG" and a.startswith("TORCH_VERSION=")]
    assert arg == f"TORCH_VERSION={pinned}"


def test_requirements_leave_out_torch_and_add_locust() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(DOCKER / "requirements.py"),
            str(support.ROOT / "pyproject.toml"),
            "--extra",
            "locust",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {re.split(r"[<>=\[ ;]", r)[0].lower() for r in out}
    assert "torch" not in names
    assert {"fastapi", "uvicorn", "redis", "stable-baselines3", "locust"} <= names


def test_runtime_is_non_root_with_healthcheck() -> None:
    runtime = _stages()["runtime"]
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert re.fullmatch(r"\d+:\d+", users[-1]), "a numeric user lets Kubernetes check runAsNonRoot"
    (health,) = [a for i, a in runtime if i == "HEALTHCHECK"]
    assert 'CMD ["edgesplit-healthcheck"]' in health
    assert any(i == "ENTRYPOINT" and "edgesplit-entrypoint" in a for i, a in runtime)
    assert not any(i == "COPY" and "--from=builder" not in a and "/opt/venv" in a for i, a in runtime)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes a context path (last matching pattern wins, `!` re-includes)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pat[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


def test_copied_sources_exist_and_are_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (support.ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must_skip in (".venv", ".git", "tools", "tests", "charts"):
        assert _ignored(must_skip, patterns), f".dockerignore should exclude {must_skip}"
    copies = [a.split() for i, a in _instructions() if i == "COPY" and not a.startswith("--from")]
    sources = [src for args in copies for src in args[:-1]]
    assert sources, "no COPY found"
    for src in sources:
        assert (support.ROOT / src).exists(), f"COPY {src}: no such path"
        assert not _ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"


def _entrypoint(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint with `python` and `locust` on PATH replaced by a script printing its call."""
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    for exe in ("python", "locust"):
        (shim / exe).write_text(f"#!/bin/sh\necho {exe} \"$@\"\nenv | grep '^EDGESPLIT_' | sort\n")
        (shim / exe).chmod(0o755)
    full_env = {"PATH": f"{shim}:/usr/bin:/bin", **(env or {})}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env=full_env, timeout=30
    )


@pytest.mark.parametrize(
    ("role", "port"),
    [("executor", "8000"), ("cloud", "8000"), ("orchestrator", "8080"), ("allocator", "8000")],
)
def test_entrypoint_runs_the_role_listening_on_all_interfaces(role: str, port: str, tmp_path: Path) -> None:
    proc = _entrypoint(tmp_path, role)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    prefix = f"EDGESPLIT_{role.upper()}"
    assert lines[0] == f"python -m services.{role}"
    assert f"{prefix}_HOST=0.0.0.0" in lines and f"{prefix}_PORT={port}" in lines


def test_entrypoint_keeps_configured_host_and_port(tmp_path: Path) -> None:
    proc = _entrypoint(
        tmp_path, "executor", env={"EDGESPLIT_EXECUTOR_PORT": "9001", "EDGESPLIT_EXECUTOR_HOST": "127.0.0.1"}
    )
    assert (
        "EDGESPLIT_EXECUTOR_PORT=9001" in proc.stdout and "EDGESPLIT_EXECUTOR_HOST=127.0.0.1" in proc.stdout
    )


def test_entrypoint_other_commands(tmp_path: Path) -> None:
    assert _entrypoint(tmp_path, "executor", "--port", "1").returncode == 2
    locust = _entrypoint(tmp_path, "locust", "--headless", "-u", "2")
    assert locust.stdout.splitlines()[0] == "locust -f /app/loadtest/locustfile.py --headless -u 2"
    usage = _entrypoint(tmp_path, "--help")
    assert usage.returncode == 0 and "executor | cloud | orchestrator | allocator" in usage.stdout
    assert _entrypoint(tmp_path, "echo", "hello").stdout == "hello\n"


class _Health(http.server.BaseHTTPRequestHandler):
    ready = True

    def do_GET(self) -> None:
        ok = self.path == "/v2/health/live" or (self.path == "/v2/health/ready" and self.ready)
        self.send_response(200 if ok else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"ready": True})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _check(*args: str) -> int:
    return subprocess.run([sys.executable, str(HEALTHCHECK), *args], timeout=30).returncode


def test_healthcheck_follows_readiness(health_server: tuple[int, type[_Health]]) -> None:
    port, handler = health_server
    assert _check(str(port)) == 0
    handler.ready = False
    assert _check(str(port)) == 1
    assert _check(str(port), "--live") == 0


def test_healthcheck_fails_when_nothing_listens(health_server: tuple[int, type[_Health]]) -> None:
    port, _ = health_server
    assert _check(str(port + 1 if port < 65535 else port - 1)) == 1
