"""A listening socket handed over by the parent process (inetd's convention: the socket is stdin).

``tooling.proc`` picks a free port by binding port 0 and keeps that socket bound until it
starts the service, which it gives the socket as its standard input. The service listens on that very
socket instead of binding the port again, so no other process can take the port in between (the
pick-then-bind race of choosing a port, closing it and binding it later). Outside that (a pod, a
terminal) stdin is no socket and the service binds ``host:port`` itself.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat


def inherited_socket(host: str, port: int, fd: int = 0) -> socket.socket | None:
    """The TCP socket on ``fd`` when it is bound to ``host:port`` (a duplicate; ``fd`` stays open);
    None otherwise."""
    with contextlib.suppress(OSError):
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
        sock = socket.socket(fileno=os.dup(fd))
        try:
            name = sock.getsockname()
            if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
                    and name[1] == port and name[0] == host):
                return sock
        except OSError:
            pass
        sock.close()
    return None
