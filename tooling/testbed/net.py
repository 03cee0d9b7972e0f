"""Network namespaces, veth pairs, a bridge and ``tbf`` shaping for the testbed (root only).

Every object is named from the testbed's prefix, so ``remove_all`` finds and removes exactly what a
testbed made, even after ``up`` was killed: the bridge ``<prefix>-br``, one namespace ``<prefix>-<host>``
per host, and per host a veth pair whose root end ``<prefix>-<host>h`` sits on the bridge and whose
other end is the host's ``eth0``. A host's ``down_mbps`` shapes the root end (traffic towards the host),
its ``up_mbps`` the ``eth0`` end (traffic from it); the gateway is the bridge's address in the root
namespace. There is no delay qdisc here (no ``netem``): links have a rate, not a latency.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edgesplit.errors import EdgesplitError, Unavailable
from tooling.testbed.description import TestbedDescription, check_prefix

NETNS_DIR = Path("/run/netns")
MTU = 1500
# Queue room of each shaped link: enough for every slice of a saturated pipeline to wait its turn
# rather than be dropped (a drop costs a TCP retransmission timeout, hundreds of ms).
TBF_LIMIT_BYTES = 4 * 1024 * 1024


class CommandFailed(EdgesplitError):
    """An ``ip`` or ``tc`` command failed (the message has its stderr)."""

    status = 500


def run(argv: Sequence[str], check: bool = True) -> str:
    """Run a command, returning its stdout; CommandFailed with its stderr when ``check`` and it fails."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise CommandFailed(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def netns(desc: TestbedDescription, host: str) -> str:
    return f"{desc.prefix}-{host}"


def root_end(desc: TestbedDescription, host: str) -> str:
    """The root namespace's end of a host's veth pair (interface names are at most 15 bytes)."""
    return f"{desc.prefix}-{'cl' if host == 'cloud' else host}h"


def bridge(desc: TestbedDescription) -> str:
    return f"{desc.prefix}-br"


def tbf_burst_bytes(rate_bps: float) -> int:
    """Bucket depth: one millisecond at the rate, at least a few full frames. A deeper bucket lets a
    small transfer cross at the veth's own speed, and the model charges every byte at the rate."""
    return max(4 * MTU, int(rate_bps / 8 * 1e-3))


def _tbf(rate_mbps: float) -> list[str]:
    rate_bps = rate_mbps * 1e6
    return ["tbf", "rate", f"{int(rate_bps)}bit", "burst", str(tbf_burst_bytes(rate_bps)),
            "limit", str(TBF_LIMIT_BYTES)]


def preflight(prefix: str) -> None:
    """Unavailable, with one line naming what is missing, unless this process can build a testbed."""
    check_prefix(prefix)
    if os.geteuid() != 0:
        raise Unavailable("the testbed needs root (network namespaces, tc and cgroups); run it as root")
    missing = [tool for tool in ("ip", "tc", "nsenter") if shutil.which(tool) is None]
    if missing:
        raise Unavailable(f"the testbed needs {', '.join(missing)} (Debian: iproute2, util-linux)")
    probe = f"{prefix}-probe"
    try:
        run(["ip", "netns", "add", probe])
    except CommandFailed as e:
        raise Unavailable(f"network namespaces are not available: {e}") from e
    try:
        run(["ip", "-n", probe, "link", "add", f"{prefix}-p0", "type", "veth", "peer", "name",
             f"{prefix}-p1"])
        run(["tc", "-n", probe, "qdisc", "add", "dev", f"{prefix}-p0", "root", *_tbf(100)])
    except CommandFailed as e:
        raise Unavailable(f"veth pairs or the tbf qdisc are not available: {e}") from e
    finally:
        run(["ip", "netns", "del", probe], check=False)


# the only names a testbed gives (module docstring): hosts' namespaces and preflight's probe; the bridge,
# the root ends of the hosts' veth pairs and the transient name of a pair's other end
_NAMESPACE_NAMES = r"(cloud|probe|e[0-9]{1,2})"
_LINK_NAMES = r"(br|tmp|clh|e[0-9]{1,2}h)"


def _ours(prefix: str, names: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(check_prefix(prefix))}-{names}")


def subnet_users(desc: TestbedDescription) -> list[str]:
    """``link address`` of every root-namespace IPv4 address inside the testbed's subnet on a link it did
    not make (another testbed, a container bridge): building over them would route the hosts' traffic
    to someone else's addresses."""
    import ipaddress

    subnet, ours = ipaddress.ip_network(desc.subnet), _ours(desc.prefix, _LINK_NAMES)
    try:
        rows = json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]")
    except (CommandFailed, ValueError):
        return []
    return [f"{r['ifname']} {a['local']}/{a.get('prefixlen', 32)}" for r in rows
            if not ours.fullmatch(str(r.get("ifname", "")))
            for a in r.get("addr_info", []) if a.get("local")
            and ipaddress.ip_network(f"{a['local']}/{a.get('prefixlen', 32)}", strict=False).overlaps(subnet)]


def port_free(address: str, port: int) -> bool:
    """Whether a server can listen on ``address:port`` (as uvicorn binds: ``SO_REUSEADDR``)."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def build(desc: TestbedDescription) -> None:
    """The bridge with the gateway's address, then every host's namespace, link and shaping."""
    br = bridge(desc)
    run(["ip", "link", "add", br, "type", "bridge"])
    run(["ip", "addr", "add", f"{desc.address('gateway')}/24", "dev", br])
    run(["ip", "link", "set", br, "up"])
    for host in desc.hosts():
        add_host(desc, host)


def add_host(desc: TestbedDescription, host: str) -> None:
    """One host: namespace, veth pair on the bridge, address, default route, tbf both ways."""
    ns, outer, inner = netns(desc, host), root_end(desc, host), f"{desc.prefix}-tmp"
    link = desc.link(host)
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner])
    run(["ip", "link", "set", outer, "master", bridge(desc), "up"])
    run(["ip", "link", "set", inner, "netns", ns])
    run(["ip", "-n", ns, "link", "set", inner, "name", "eth0"])
    run(["ip", "-n", ns, "addr", "add", f"{desc.address(host)}/24", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", desc.address("gateway")])
    run(["tc", "qdisc", "replace", "dev", outer, "root", *_tbf(link.down_mbps)])
    run(["tc", "-n", ns, "qdisc", "replace", "dev", "eth0", "root", *_tbf(link.up_mbps)])


def _tbf_rate(argv: Sequence[str]) -> float | None:
    """The rate (bits/s) of the root tbf qdisc that ``argv`` (a ``tc -j qdisc show``) lists."""
    try:
        for q in json.loads(run(argv) or "[]"):
            if q.get("kind") == "tbf" and q.get("root"):
                return 8.0 * float(q["options"]["rate"])
    except (CommandFailed, ValueError, KeyError):
        return None
    return None


def link_rates(desc: TestbedDescription, host: str) -> tuple[float | None, float | None]:
    """(up, down) rates in bits/s read back from the kernel (None where no tbf is found)."""
    ns, outer = netns(desc, host), root_end(desc, host)
    up = _tbf_rate(["tc", "-j", "-n", ns, "qdisc", "show", "dev", "eth0"])
    down = _tbf_rate(["tc", "-j", "qdisc", "show", "dev", outer])
    return up, down


def namespaces(prefix: str) -> list[str]:
    """Namespaces the testbed of ``prefix`` makes (``<prefix>-cloud``, ``<prefix>-e0``, ...)."""
    ours = _ours(prefix, _NAMESPACE_NAMES)
    out = run(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return sorted(n for n in names if ours.fullmatch(n))


def links(prefix: str) -> list[str]:
    """Links of the root namespace the testbed of ``prefix`` makes (``<prefix>-br``, ``<prefix>-e0h``,
    ...)."""
    ours = _ours(prefix, _LINK_NAMES)
    try:
        rows = json.loads(run(["ip", "-j", "link", "show"]) or "[]")
    except (CommandFailed, ValueError):
        return []
    return sorted(r["ifname"] for r in rows if ours.fullmatch(str(r.get("ifname", ""))))


def netns_pids(ns: str) -> list[int]:
    return [int(p) for p in run(["ip", "netns", "pids", ns], check=False).split() if p.isdigit()]


def remove_all(prefix: str) -> list[str]:
    """Delete every namespace and link of the testbed of ``prefix`` (deleting a namespace deletes its veth
    end, and with it the pair); returns what was removed."""
    removed = []
    for ns in namespaces(prefix):
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    for name in links(prefix):
        run(["ip", "link", "del", name], check=False)
        removed.append(f"link {name}")
    return removed
