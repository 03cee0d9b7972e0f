"""``OrchestratorClient`` when the orchestrator cannot be reached: a domain error naming the URL (the
CLI prints it as one line, exit status 2), never an httpx traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from edgesplit.errors import Unavailable, Unreachable
from services.orchestrator.client import OrchestratorClient


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def test_refused_connection_is_unreachable_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    refused = f"cannot reach the orchestrator at {url}"
    with OrchestratorClient(url) as oc, pytest.raises(Unreachable, match=refused):
        oc.models()


def test_a_server_that_never_answers_is_unavailable() -> None:
    """A listener that accepts and says nothing: the client's timeout ends it as Unavailable."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        held: list[socket.socket] = []
        accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
        accepting.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with OrchestratorClient(url, timeout_s=0.5) as oc, pytest.raises(Unavailable, match="did not answer"):
            oc.status()
        for conn in held:
            conn.close()


def test_submit_cli_says_one_line_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    cli = [sys.executable, "-c", "from tooling.cli import main; main()"]
    proc = subprocess.run([*cli, "submit", "/etc/hostname", "--model", "alexnet-paper", "--url", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"edgesplit: error: cannot reach the orchestrator at {url}: [Errno 111] Connection refused "
        f"(is it running? `edgesplit up` starts one)"]
