"""Pause points between the layers of a slice, where a service may make low-priority work give way.

Every strategy's ``compute`` that runs layers one after another (``rows``, ``channels``) calls
:func:`pause_point` before each layer. It does nothing unless the calling thread installed a wait with
:func:`pause_with`: the executor's and the cloud's bulk threads install one that holds them while an
urgent slice computes in the same process (``services.common.compute.UrgentGate``), so that the urgent
slice gets the cores within one layer of a batch instead of sharing them for the whole batch. A pause
only delays; what is computed does not depend on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_local = threading.local()


def pause_with(wait: Callable[[], None] | None) -> None:
    """Make :func:`pause_point` call ``wait`` in the calling thread (None: nothing)."""
    _local.wait = wait


def pause_point() -> None:
    """Call the calling thread's wait, if it installed one (module docstring)."""
    wait = getattr(_local, "wait", None)
    if wait is not None:
        wait()
