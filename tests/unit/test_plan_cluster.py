"""Cluster description: named scenarios, YAML round trip, clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesplit.errors import FILE_MAX_BYTES, InvalidInput, InvalidPlan
from edgesplit.plan.cluster import (
    DEFAULT_FLOPS_PER_THREAD,
    PAPER_CLOUD_FLOPS,
    Cloud,
    Cluster,
    Server,
    dump_cluster,
    load_cluster,
    resolve_cluster,
    scenario,
)


def test_paper_scenario_matches_section_5() -> None:
    c = scenario("paper", seed=3)
    assert len(c.servers) == 8
    assert all(s.threads == 20 and s.flops_per_thread == 80e9 and s.overhead_s == 0 for s in c.servers)
    assert all(605e9 <= s.link_bps <= 635e9 for s in c.servers)
    assert 105e6 <= c.cloud.link_bps <= 125e6
    assert c.cloud.flops == PAPER_CLOUD_FLOPS
    assert len({s.link_bps for s in c.servers}) == 8  # drawn, not constant


def test_edge_1g_scenario() -> None:
    c = scenario("edge-1g", seed=0)
    assert all(s.link_bps == 1e9 and s.overhead_s == pytest.approx(0.2e-3) for s in c.servers)
    assert c.cloud.overhead_s == pytest.approx(0.2e-3)


def test_scenarios_are_seeded() -> None:
    assert scenario("paper", 7) == scenario("paper", 7)
    assert scenario("paper", 7) != scenario("paper", 8)
    assert len(scenario("paper", 0, servers=64).servers) == 64


@pytest.mark.parametrize("bad", [0, -1])
def test_zero_servers_is_refused(bad: int) -> None:
    with pytest.raises(InvalidPlan, match="at least 1"):
        scenario("paper", servers=bad)


def test_unknown_scenario() -> None:
    with pytest.raises(InvalidInput, match="unknown scenario"):
        scenario("nope")
    with pytest.raises(InvalidInput, match="unknown scenario"):
        resolve_cluster("no-such-file.yaml")


def test_yaml_round_trip(tmp_path: Path) -> None:
    c = scenario("edge-1g", seed=5)
    path = tmp_path / "cluster.yaml"
    dump_cluster(c, path)
    assert load_cluster(path) == c
    assert resolve_cluster(str(path), servers=3) == c.take(3)


def test_unknown_flops_get_the_default_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "executors:\n"
        "  - {name: a, url: 'http://127.0.0.1:9001', threads: 4}\n"
        "  - {name: b, url: 'http://127.0.0.1:9002', threads: 2, flops_per_thread: 5.0e+10,\n"
        "     link_bps: 1.0e+10}\n"
        "cloud: {url: 'http://127.0.0.1:9100', flops: 2.0e+11, link_bps: 1.0e+8}\n"
        "models: [alexnet-paper]\n")
    c = load_cluster(path)
    a, b = c.servers
    assert a.flops_per_thread == DEFAULT_FLOPS_PER_THREAD and not a.flops_known
    assert b.flops_per_thread == 5e10 and b.flops_known and b.link_bps == 1e10
    assert c.models == ("alexnet-paper",) and c.cloud.url == "http://127.0.0.1:9100"
    dump_cluster(c, tmp_path / "again.yaml")
    assert load_cluster(tmp_path / "again.yaml") == c
    assert "flops_per_thread: null" in (tmp_path / "again.yaml").read_text()


@pytest.mark.parametrize(("text", "message"), [
    ("executors: []\n", "executors"),
    ("executors:\n  - {name: a}\n", "executors.0.threads"),
    ("executors:\n  - {threads: 0}\n", "executors.0.threads"),
    ("executors:\n  - {threads: 2, link_bps: -1}\n", "executors.0.link_bps"),
    ("executors:\n  - {threads: 2, colour: red}\n", "executors.0.colour"),
    ("executors:\n  - {threads: 2}\ncloud: {flops: 0}\n", "cloud.flops"),
    ("executors:\n  - {name: a, threads: 2}\n  - {name: a, threads: 2}\n", "unique"),
    ("- just a list\n", "mapping"),
    ("executors: [\n", "not valid YAML"),
    ("executors:\n  - {threads: 2, host: n1}\n", "host 'n1' is not listed under 'hosts'"),
    ("executors:\n  - {threads: 2, host: n1}\nhosts: {n1: {cores: 0}}\n", "hosts.n1.cores"),
    ("executors:\n  - {threads: 2}\nhosts: {n1: {cores: 2, ram: 4}}\n", "hosts.n1.ram"),
])
def test_bad_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message) as info:
        load_cluster(path)
    assert str(path) in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_cluster("/nonexistent/cluster.yaml")


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    """A folder, a binary file, an endless device: one-line InvalidInput, never a traceback or a read
    that does not end (``/dev/zero`` is cut at ``FILE_MAX_BYTES``)."""
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"executors: [\xff\xfe]\n")
    cases = [(tmp_path, "cannot be read: Is a directory"), (binary, r"is not UTF-8 text \(byte 12\)"),
             (Path("/dev/zero"), f"is larger than {FILE_MAX_BYTES} bytes")]
    for path, message in cases:
        with pytest.raises(InvalidInput, match=message) as info:
            load_cluster(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("executors:\n  - {threads: 2\n")
    with pytest.raises(InvalidInput, match=r"not valid YAML at line 3, column 1: ") as info:
        load_cluster(bad)
    assert "\n" not in str(info.value)


def test_cluster_lookup_and_take() -> None:
    c = scenario("paper")
    assert c.index("ex3") == 3 and c.index(5) == 5
    with pytest.raises(InvalidPlan, match="no server named"):
        c.index("ex99")
    with pytest.raises(InvalidPlan, match="cluster has 8"):
        c.take(9)
    with pytest.raises(InvalidPlan, match="at least 1"):
        Cluster((), c.cloud)


def test_hosts_round_trip_and_give_each_server_its_cores(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "executors:\n"
        "  - {name: a, threads: 2, host: node-1}\n"
        "  - {name: b, threads: 2, host: node-1}\n"
        "  - {name: c, threads: 4}\n"
        "hosts: {node-1: {cores: 2}}\n")
    c = load_cluster(path)
    a, b, solo = c.servers
    assert (a.host, a.host_cores) == (b.host, b.host_cores) == ("node-1", 2)
    assert solo.host is None and solo.host_cores is None
    assert c.hosts() == {"node-1": 2}
    dump_cluster(c, tmp_path / "again.yaml")
    assert load_cluster(tmp_path / "again.yaml") == c
    assert c.take(2).hosts() == {"node-1": 2}


def test_a_host_has_one_core_count() -> None:
    with pytest.raises(InvalidPlan, match="host 'n' has 2 cores"):
        Cluster((Server("a", 2, 1e9, 1e9, host="n", host_cores=2),
                 Server("b", 2, 1e9, 1e9, host="n", host_cores=4)), Cloud(1e9, 1e9))
    with pytest.raises(InvalidPlan, match="host and host_cores go together"):
        Server("a", 2, 1e9, 1e9, host="n")
