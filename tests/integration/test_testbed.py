"""The testbed as real hosts: network namespaces, tbf-shaped veth links and cgroup CPU quotas built by
``tooling.testbed`` as root (CI runs as root on this kind of machine), with the real services inside.

A 3-host testbed comes up; a task's logits equal local torch's; the tbf rate configured for each
direction of every link and the quota of every cgroup are read back from the kernel; each executor
reads its capacity and quota from its own cgroup; ``testbed down`` (the CLI, as a user runs it)
leaves no namespace, link or cgroup of the prefix, also after ``testbed up`` was killed with SIGKILL.
Without root the CLI refuses with one line and exit status 2.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from edgesplit import wire
from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from edgesplit.models.build import load_model
from edgesplit.plan.cluster import load_cluster
from services.orchestrator.client import OrchestratorClient
from tooling.stack import StackSettings
from tooling.testbed import cgroups, net
from tooling.testbed.bed import Testbed, status, teardown
from tooling.testbed.description import TestbedDescription, parse_description

ROOT = os.geteuid() == 0
pytestmark = [
    pytest.mark.redis, pytest.mark.services, pytest.mark.testbed,
    pytest.mark.skipif(not ROOT, reason="the testbed needs root (network namespaces, tc, cgroups); "
                                        "CI runs as root"),
]
CLI = [sys.executable, "-c", "from tooling.cli import main; main()"]
MODEL = "alexnet-paper"


def _desc(prefix: str, subnet: str, port: int) -> TestbedDescription:
    return parse_description({
        "prefix": prefix, "subnet": subnet, "models": [MODEL], "gateway": {"port": port},
        "cloud": {"cpus": 1.0, "up_mbps": 100, "down_mbps": 80},
        "edges": [{"cpus": 0.5, "up_mbps": 1000, "down_mbps": 900},
                  {"cpus": 0.5, "up_mbps": 500, "down_mbps": 500},
                  {"cpus": 0.25, "up_mbps": 1000, "down_mbps": 1000}]})


def _leftovers(prefix: str) -> list[str]:
    return net.namespaces(prefix) + net.links(prefix) + ([str(cgroups.root(prefix))]
                                                         if cgroups.root(prefix).exists() else [])


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    desc = _desc("estt", "10.251.78.0/24", 18080)
    home = tmp_path_factory.mktemp("testbed")
    tb = Testbed(desc, StackSettings(log_dir=home / "logs"), state_dir=home, profile_points=3)
    try:
        tb.start()
        yield tb
    finally:
        tb.stop()


def test_a_task_on_the_testbed_equals_local_torch(bed: Testbed) -> None:
    spec = get_spec(MODEL)
    module = load_model(spec, seed=0)
    xs = [np.random.default_rng(s).standard_normal((1, *spec.input)).astype(np.float32) for s in range(3)]
    with OrchestratorClient(bed.url, token=bed.api_token, timeout_s=120) as oc:
        infos = [oc.run(wire.encode(x), MODEL, priority=1, wait_s=120) for x in xs]
    with torch.no_grad():
        for info, x in zip(infos, xs, strict=True):
            assert info["status"] == "done", info
            ref = module(torch.from_numpy(x))
            torch.testing.assert_close(torch.tensor(info["logits"]).view_as(ref), ref, rtol=1e-4, atol=1e-4)
    assert bed.url.startswith("http://10.251.78.1:")  # served from the gateway's own address


def test_a_second_testbed_never_takes_over_a_running_one(bed: Testbed, tmp_path: Path) -> None:
    """Building the same prefix again is refused while its hosts run (it used to kill them and start
    over); another prefix on the same subnet is refused (its routes would go to the first one's
    addresses); either way the running testbed keeps serving and the refused one leaves nothing."""
    pids = [p for info in status(bed.desc.prefix, bed.home.parent)["hosts"].values() for p in info["pids"]]
    assert pids
    again = Testbed(bed.desc, StackSettings(log_dir=tmp_path / "logs"), state_dir=tmp_path, measure=False)
    with pytest.raises(InvalidInput, match=r"testbed estt is up \(\d+ process\(es\) in its hosts\)"):
        again.start()
    other = _desc("ests", "10.251.78.0/24", 18083)
    clash = Testbed(other, StackSettings(log_dir=tmp_path / "logs2"), state_dir=tmp_path, measure=False)
    taken = r"subnet 10\.251\.78\.0/24 is in use here \(estt-br 10\.251\.78\.1/24"
    with pytest.raises(InvalidInput, match=taken):
        clash.start()
    assert _leftovers("ests") == []
    assert all(cgroups.alive(p) for p in pids)
    assert httpx.get(bed.url + "/v2/health/ready", timeout=10).status_code == 200


def test_a_taken_gateway_port_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """A process listening on every address holds the orchestrator's port: refused at once with one
    line (it failed after a minute of calibration with uvicorn's log), and nothing is left."""
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        tb = Testbed(_desc("estp", "10.251.80.0/24", port), StackSettings(log_dir=tmp_path / "logs"),
                     state_dir=tmp_path, measure=False)
        with pytest.raises(InvalidInput, match=f"port {port} is taken on the gateway's address 10.251.80.1"):
            tb.start()
    assert _leftovers("estp") == []


def test_links_and_quotas_are_read_back_from_the_kernel(bed: Testbed) -> None:
    report = status(bed.desc.prefix, bed.home.parent)
    assert set(report["hosts"]) == {"cloud", "e0", "e1", "e2"}
    for host, info in report["hosts"].items():
        link = bed.desc.link(host)
        assert info["up_bps"] == pytest.approx(link.up_mbps * 1e6, rel=1e-3), host
        assert info["down_bps"] == pytest.approx(link.down_mbps * 1e6, rel=1e-3), host
        assert info["cpus"] == pytest.approx(link.cpus, rel=1e-3), host
        assert info["period_us"] == int(bed.desc.cpu_period_ms * 1000)
        assert len(info["pids"]) >= 1, f"{host} runs its service inside its namespace"
        assert info["address"] == bed.desc.address(host)


def test_executors_take_capacity_and_quota_from_their_cgroup(bed: Testbed) -> None:
    for i, svc in enumerate(bed.executors):
        assert svc is not None
        info = httpx.get(f"{svc.url}/v1/info", headers={"Authorization": f"Bearer {bed.token}"},
                         timeout=30, trust_env=False).json()
        assert info["cpu_quota"] == pytest.approx(bed.desc.edges[i].cpus, rel=1e-3)
        assert info["capacity"] == 1  # a fraction of a core is one worker, at that fraction's speed


def test_cluster_file_carries_measured_speeds_links_and_overheads(bed: Testbed) -> None:
    cluster = load_cluster(bed.cluster_path)
    assert [s.url for s in cluster.servers] == [f"http://{bed.desc.address(f'e{i}')}:8101" for i in range(3)]
    assert [s.host_cores for s in cluster.servers] == [0.5, 0.5, 0.25]
    assert [s.link_bps for s in cluster.servers] == [900e6, 500e6, 1000e6]  # the slower direction
    assert all(s.overhead_s > 0 and s.flops_known for s in cluster.servers)
    assert cluster.cloud.link_bps == 80e6 and cluster.cloud.overhead_s > 0
    assert cluster.controller_overhead_s > 0
    assert bed.per_core is not None
    assert cluster.servers[0].flops_per_thread == bed.per_core["edge_flops_per_core"]
    profile = cluster.profile(MODEL)  # the slices' efficiency, measured before the services started
    assert profile is not None
    assert (0, get_spec(MODEL).n_edge) in {(g.start, g.stop) for g in profile.groups}
    assert all(min(g.efficiency) > 0 and len(g.units) <= 4 for g in profile.groups)


def test_recalibrate_measures_again_and_rewrites_the_cluster_file(bed: Testbed) -> None:
    """What ``bench testbed`` does before each host count: new per-core figures, in the cluster file,
    the measured overheads kept."""
    before = dict(bed.per_core or {})
    overheads = [s.overhead_s for s in load_cluster(bed.cluster_path).servers]
    bed.recalibrate()
    after = bed.per_core
    assert after is not None and after is not before and set(after) == set(before)
    assert after != before  # a fresh measurement: timings never repeat to the last bit
    cluster = load_cluster(bed.cluster_path)
    assert cluster.servers[0].flops_per_thread == after["edge_flops_per_core"]
    assert cluster.cloud.conv_flops == pytest.approx(after["conv_flops_per_core"] * bed.desc.cloud.cpus)
    assert [s.overhead_s for s in cluster.servers] == overheads


def test_down_after_a_kill_of_up_leaves_nothing(tmp_path: Path) -> None:
    """``testbed up`` killed with SIGKILL while it runs, then ``testbed down``: nothing of the prefix left,
    no process of its hosts still alive."""
    prefix = "estk"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["testbed", "up", "--prefix", prefix, "--edges", "2", "--cpus", "0.5", "--port", "18081"]
    proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (net.namespaces(prefix) and cgroups.pids(prefix)):
            time.sleep(0.2)  # until its hosts exist and a process runs in one (calibration or a service)
        hosted = cgroups.pids(prefix)
        assert hosted and net.namespaces(prefix), "testbed up did not build its hosts"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _leftovers(prefix), "the killed up left its hosts behind (what down must clean)"
        done = subprocess.run([*CLI, "testbed", "down", "--prefix", prefix], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert _leftovers(prefix) == []
        assert not [p for p in hosted if cgroups.alive(p)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        teardown(prefix)


def test_stop_removes_every_namespace_link_and_cgroup(tmp_path: Path) -> None:
    desc = _desc("estr", "10.251.79.0/24", 18082)
    tb = Testbed(desc, StackSettings(log_dir=tmp_path / "logs"), state_dir=tmp_path, measure=False)
    tb.build()
    assert len(net.namespaces("estr")) == 4 and cgroups.root("estr").exists()
    tb._built = True
    tb.stop()
    assert _leftovers("estr") == []


def test_without_root_the_cli_refuses_with_one_line() -> None:
    """``testbed up`` as an unprivileged user: the modules are imported as root (the clone may sit in a
    folder only root can read, as ``mktemp -d`` makes it), the command line parsed once (``--help``:
    the parser imports more of typer lazily), then the process drops to uid 65534 and runs it."""
    drop = textwrap.dedent("""
        import contextlib, io, os, sys
        import tooling.cli as c, tooling.testbed.net, tooling.testbed.cgroups
        c.core.register_all(c.AREAS)
        sys.argv = ["edgesplit", "testbed", "up", "--help"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            c.main()
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
        sys.argv = ["edgesplit", "testbed", "up", "--prefix", "estn"]
        c.main()
    """)
    done = subprocess.run([sys.executable, "-c", drop], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": "/tmp"})
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs root" in lines[0], done.stderr
    assert net.namespaces("estn") == []
