"""Ports of the services started by ``tooling.proc``: picked by binding port 0, held until
the service starts, and handed to it, so no other process can take them in between."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from tooling.proc import ServiceProcess, free_port

pytestmark = pytest.mark.services


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the IPv4 sockets listening on ``port`` (``/proc/net/tcp``, state 0A = LISTEN)."""
    found = set()
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                found.add(fields[9])
    return found


def test_a_picked_port_stays_taken_and_refuses_connections_until_a_service_starts() -> None:
    port = free_port()
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError) as taken:
        other.bind(("127.0.0.1", port))
    other.close()
    assert taken.value.errno == errno.EADDRINUSE
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))


def test_a_started_service_listens_on_the_socket_it_was_handed(cloud: ServiceProcess) -> None:
    link = os.readlink(f"/proc/{cloud.proc.pid}/fd/0")
    assert link.startswith("socket:[")
    assert link[len("socket:["):-1] in _listening_inodes(cloud.port)
