"""One CPU cgroup per testbed host: v1 ``cpu.cfs_quota_us`` where the ``cpu`` controller is mounted
alone (as on these machines), else v2 ``cpu.max`` (root only).

Groups live under ``<mount>/edgesplit-<prefix>/<host>``; the gateway gets one without a quota, only so that
``remove_all`` can find its processes after a kill -9 of ``testbed up``. A process joins its group
before it enters its network namespace (``ip netns exec`` would remount /sys and hide the cgroup
files): ``shell_prefix`` gives the few shell words that do both and then exec the service.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import time
from pathlib import Path
from typing import NamedTuple

from edgesplit.errors import Unavailable
from tooling.testbed.description import check_prefix

V1_CPU = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")
GROUP_TAG = "edgesplit-"  # the testbed's groups are <mount>/edgesplit-<prefix>/<host>


class Quota(NamedTuple):
    """A cgroup's CPU quota as the kernel has it: microseconds per period (None: unlimited)."""

    quota_us: int | None
    period_us: int

    @property
    def cpus(self) -> float | None:
        return None if self.quota_us is None else self.quota_us / self.period_us


def version() -> int:
    """1 where the v1 ``cpu`` controller is mounted, 2 where a v2 hierarchy offers ``cpu``; else
    Unavailable naming what is missing."""
    if (V1_CPU / "cpu.cfs_quota_us").exists():
        return 1
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return 2
    raise Unavailable("no cgroup cpu controller: neither /sys/fs/cgroup/cpu (v1) nor 'cpu' in "
                      "/sys/fs/cgroup/cgroup.controllers (v2)")


def root(prefix: str) -> Path:
    """The testbed's top group, ``<mount>/edgesplit-<prefix>``: the fixed part keeps a prefix that
    happens to name another program's group (``docker``, ``lxc``) from ever reaching it."""
    return (V1_CPU if version() == 1 else V2_ROOT) / f"{GROUP_TAG}{check_prefix(prefix)}"


def path(prefix: str, host: str) -> Path:
    return root(prefix) / host


def create(prefix: str, host: str, cpus: float | None, period_ms: float) -> Path:
    """The host's group with ``cpus`` cores per ``period_ms`` (None: no quota)."""
    top = root(prefix)
    v2 = version() == 2
    if not top.exists():
        top.mkdir()
        if v2:  # let the testbed's groups use the cpu controller
            (top / "cgroup.subtree_control").write_text("+cpu")
    group = top / host
    group.mkdir(exist_ok=True)
    period_us = int(period_ms * 1000)
    quota_us = None if cpus is None else max(1000, round(cpus * period_us))
    if v2:
        (group / "cpu.max").write_text(f"{'max' if quota_us is None else quota_us} {period_us}")
    else:
        (group / "cpu.cfs_period_us").write_text(str(period_us))
        (group / "cpu.cfs_quota_us").write_text(str(-1 if quota_us is None else quota_us))
    return group


def quota(group: Path) -> Quota | None:
    """The quota read back from the kernel (None if the group does not exist)."""
    try:
        if (group / "cpu.max").exists():
            q, p = (group / "cpu.max").read_text().split()[:2]
            return Quota(None if q == "max" else int(q), int(p))
        q_us = int((group / "cpu.cfs_quota_us").read_text())
        return Quota(None if q_us < 0 else q_us, int((group / "cpu.cfs_period_us").read_text()))
    except (OSError, ValueError):
        return None


def throttling(group: Path) -> dict[str, int]:
    """``cpu.stat`` counters (``nr_periods``, ``nr_throttled``, throttled time): the signal
    Kubernetes exposes as ``container_cpu_cfs_throttled_periods_total``."""
    try:
        rows = (line.split() for line in (group / "cpu.stat").read_text().splitlines())
        return {k: int(v) for k, v in rows}
    except (OSError, ValueError):
        return {}


def shell_prefix(group: Path, netns: str | None) -> str:
    """Shell words that move the shell into ``group``, then into ``netns`` (if any), then ``exec`` the
    rest of the command line."""
    join = f"echo $$ > {shlex.quote(str(group / 'cgroup.procs'))}"
    enter = f"exec nsenter --net=/run/netns/{shlex.quote(netns)} " if netns else "exec "
    return f"{join} && {enter}"


def pids(prefix: str) -> list[int]:
    """Processes in any of the testbed's groups."""
    out: list[int] = []
    top = root(prefix)
    if not top.exists():
        return out
    for procs in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            out += [int(p) for p in procs.read_text().split()]
    return out


def kill(pids_: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(alive(p) for p in pids_):
            time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _rmdir(group: Path, wait_s: float) -> bool:
    """Remove an empty group; a killed process still counts in it until its parent reaps it (EBUSY),
    so retry for up to ``wait_s`` (a testbed killed with its services once left its gateway group)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            group.rmdir()
            return True
        except OSError:
            if time.monotonic() >= deadline or not group.exists():
                return False
            time.sleep(0.05)


def remove_all(prefix: str, wait_s: float = 5.0) -> list[str]:
    """Remove the testbed's groups, innermost first (their processes must be gone)."""
    top = root(prefix)
    removed: list[str] = []
    if not top.exists():
        return removed
    for group in [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), top]:
        if _rmdir(group, wait_s):
            removed.append(f"cgroup {group}")
    return removed
