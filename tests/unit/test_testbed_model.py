"""What the testbed relies on, without root: the description's checks, a process's own cgroup quota,
fractional host cores in the latency model, the cloud's conv rate in DADS, and the served modes'
predictions (the simulator equals the latency model for one task)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgesplit.errors import InvalidInput
from edgesplit.models import get_spec
from edgesplit.plan.cluster import Cloud, Cluster, Server, cluster_from_dict, cluster_to_dict
from edgesplit.plan.dads import dads, no_split
from edgesplit.plan.latency import THROTTLED_PHASES, predict, throttle_delay
from edgesplit.plan.planner import make_plan
from edgesplit.sim.engine import SimConfig, simulate
from edgesplit.sim.records import make_tasks
from edgesplit.sim.served import SERVED_MODES, cpu_groups, dads_cut, predict_served, served_workload
from services.common.settings import _cgroup_quota, own_cgroups
from tooling.testbed.description import parse_description, uniform

SPEC = get_spec("alexnet-paper")


def _cluster(n: int, cores: float | None, threads: int = 1, conv_flops: float | None = None) -> Cluster:
    servers = tuple(Server(f"executor-{i}", threads, 60e9, 1e9, overhead_s=2e-3,
                           host=None if cores is None else f"e{i}", host_cores=cores) for i in range(n))
    cloud = Cloud(8e9, 100e6, overhead_s=3e-3, conv_flops=conv_flops)
    return Cluster(servers, cloud, ("alexnet-paper",), 5e-3)


def test_description_defaults_addresses_and_errors() -> None:
    desc = uniform(3)
    assert [e.cpus for e in desc.edges] == [0.2] * 3 and desc.cloud.up_mbps == 100
    assert desc.address("gateway") == "10.251.77.1" and desc.address("e2") == "10.251.77.12"
    assert desc.hosts() == ["cloud", "e0", "e1", "e2"] and desc.edges[0].zone() == 1
    bad = [({"edges": []}, "edges"), ({"edges": [{"cpus": 0.2, "nope": 1}]}, "nope"),
           ({"edges": [{"cpus": -1}]}, "cpus"),
           ({"edges": [{"cpus": 0.2}], "subnet": "8.8.8.0/24"}, "private"),
           ({"edges": [{"cpus": 0.2}], "prefix": "Bad-Prefix"}, "prefix"),
           ({"edges": [{"cpus": 0.05}]}, "1 ms minimum"), ({"edges": [{"cpus": 0.2}], "models": ["x"]}, "x")]
    for raw, word in bad:
        with pytest.raises(InvalidInput, match=word):
            parse_description(raw)


def test_own_cgroup_is_resolved_from_proc_self_cgroup(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("1:cpu:/estb/e0\n0::/\n")
    group = tmp_path / "cpu" / "estb" / "e0"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("2000\n")
    (group / "cpu.cfs_period_us").write_text("10000\n")
    pairs = own_cgroups(proc, tmp_path)
    assert [v1 for _, v1 in pairs] == [group, group.parent, tmp_path / "cpu"]
    quotas = [q for q in (_cgroup_quota(v2, v1) for v2, v1 in pairs) if q is not None]
    assert quotas == [0.2]
    (group.parent / "cpu.cfs_quota_us").write_text("1000\n")  # a parent's tighter quota counts too
    (group.parent / "cpu.cfs_period_us").write_text("10000\n")
    assert min(q for q in (_cgroup_quota(v2, v1) for v2, v1 in pairs) if q is not None) == 0.1


def test_fractional_cores_slow_a_server_by_its_quota() -> None:
    whole = make_plan(SPEC, _cluster(1, None), "edgesplit")
    fifth = make_plan(SPEC, _cluster(1, 0.2), "edgesplit")
    compute = [sum(s.compute_s for s in p.predicted.stages) for p in (whole, fifth)]
    assert compute[1] == pytest.approx(5 * compute[0])
    # five threads sharing 0.2 core compute no faster than one: the quota is the limit
    five = make_plan(SPEC, _cluster(1, 0.2, threads=5), "edgesplit", groups=[(0, SPEC.n_edge)])
    assert sum(s.compute_s for s in five.predicted.stages) == pytest.approx(compute[1], rel=1e-6)
    alone = no_split(SPEC, _cluster(1, None)).edge_s
    assert no_split(SPEC, _cluster(1, 0.2)).edge_s == pytest.approx(5 * alone)


def test_throttle_delay_grows_with_the_servers_of_a_stage() -> None:
    quota = Server("a", 1, 60e9, 1e9, host="e0", host_cores=0.2, host_period_s=0.01)
    assert throttle_delay(quota, 1) == pytest.approx(THROTTLED_PHASES * 0.8 * 0.01 / 2)
    assert throttle_delay(quota, 8) == pytest.approx(THROTTLED_PHASES * 0.8 * 0.01 * 8 / 9)
    assert throttle_delay(replace(quota, host_period_s=None), 8) == 0.0  # no period known: no term
    assert throttle_delay(replace(quota, host_cores=2.0), 8) == 0.0  # whole cores: no throttling wait
    base = _cluster(4, 0.2)
    cluster = replace(base, servers=tuple(replace(s, host_period_s=0.01) for s in base.servers))
    plain = make_plan(SPEC, _cluster(4, 0.2), groups=[(0, SPEC.n_edge)])
    stage = plain.stages[0]
    with_wait = predict(SPEC, cluster, plain.stages).stages[0]
    assert with_wait.overhead_s - plain.predicted.stages[0].overhead_s == pytest.approx(
        throttle_delay(cluster.servers[0], len(stage.servers)))


def test_cluster_file_round_trips_fractional_cores_controller_and_conv_rate() -> None:
    cluster = _cluster(2, 0.25, conv_flops=50e9)
    cluster = replace(cluster, servers=tuple(replace(s, host_period_s=0.01) for s in cluster.servers))
    again = cluster_from_dict(cluster_to_dict(cluster))
    assert again == cluster
    assert predict(SPEC, cluster, make_plan(SPEC, cluster).stages).controller_s == 5e-3


def test_dads_uses_the_clouds_conv_rate() -> None:
    slow_convs = _cluster(1, 0.2)  # the cloud's one rate, FC-bound: convs there look slow
    fast_convs = _cluster(1, 0.2, conv_flops=60e9)
    assert dads(SPEC, slow_convs).cut == len(SPEC.layers)  # all on the edge
    assert dads(SPEC, fast_convs).cut == 0  # the 0.2-core edge loses to a whole core in the cloud
    assert dads_cut(SPEC, fast_convs) == 0


@pytest.mark.parametrize("mode", SERVED_MODES)
def test_served_predictions(mode: str) -> None:
    cluster = _cluster(4, 0.2, threads=5 if mode == "paper" else 1, conv_flops=60e9)
    out = predict_served(SPEC, cluster, mode, tasks=12)  # type: ignore[arg-type]
    single = served_workload(SPEC, cluster, mode).single_task_s()  # type: ignore[arg-type]
    assert out["single_task_ms"] == pytest.approx(1e3 * single, rel=1e-9)
    assert out["throughput_per_s"] > 0
    if mode in ("paper", "edgesplit"):
        plan = make_plan(SPEC, cluster, "paper" if mode == "paper" else "edgesplit")
        assert out["single_task_ms"] == pytest.approx(1e3 * plan.predicted.total_s, rel=1e-9)


def test_no_split_throughput_grows_with_hosts() -> None:
    one = predict_served(SPEC, _cluster(1, 0.2), "no-split", tasks=16)
    four = predict_served(SPEC, replace(_cluster(4, 0.2)), "no-split", tasks=16)
    assert four["throughput_per_s"] > 3 * one["throughput_per_s"]


def test_served_throughput_counts_the_cloud_one_task_at_a_time() -> None:
    """The stack's cloud service computes one request at a time on its host: when a plan sends the
    whole model to the cloud, a burst is served at the cloud's pace (1 / its compute per task), not
    at the paper's elastic cloud's (the testbed measured 7-13 tasks/s where 239-428 were predicted)."""
    cluster = _cluster(8, 0.2, conv_flops=60e9)
    workload = served_workload(SPEC, cluster, "dads")
    assert dads_cut(SPEC, cluster) == 0
    cloud = workload.cloud[0]  # type: ignore[union-attr]
    out = predict_served(SPEC, cluster, "dads", tasks=20)
    assert out["throughput_per_s"] <= 1.0 / cloud.compute_s * (1 + 1e-9)
    assert out["throughput_per_s"] >= 0.8 / cloud.compute_s  # the first task's transfer and overhead aside
    assert out["single_task_ms"] == pytest.approx(1e3 * workload.single_task_s(), rel=1e-9)


def test_served_throughput_counts_a_small_host_one_step_at_a_time() -> None:
    """Each stage step on a host of 0.2 core is priced at the host's whole quota, so the paper's plan
    (a sub-zone per conv on every host) cannot serve more than one task per the busiest host's steps
    together; the paper's model runs the sub-zones in parallel (predicted 27.7 tasks/s on the testbed
    against 8.1 measured)."""
    cluster = _cluster(4, 0.2, threads=5, conv_flops=60e9)
    assert cpu_groups(cluster) == (0, 1, 2, 3)
    assert cpu_groups(_cluster(2, None)) == (None, None)
    workload = served_workload(SPEC, cluster, "paper")
    busiest = max(sum(st.compute_s for stage in workload.stages for st in stage.servers  # type: ignore[union-attr]
                      if st.server == m) for m in range(4))
    out = predict_served(SPEC, cluster, "paper", tasks=24)
    assert out["throughput_per_s"] <= 1.0 / busiest * (1 + 1e-9)
    parallel = simulate({SPEC.name: workload}, make_tasks(SPEC.name, 24, seed=0),
                        SimConfig(cloud_serial=True)).throughput_per_s()
    assert parallel > 1.5 * out["throughput_per_s"]  # the paper's model: every sub-zone at once


def test_planner_chooses_the_edge_cloud_cut_when_the_cloud_can_run_convs() -> None:
    """With the cloud's conv rate known, the edgesplit plan is the best over every cut point: never
    predicted slower than DADS's cut, nor than the all-edge plan; without it, the paper's cut stays."""
    from edgesplit.plan.planner import active_servers, edgesplit_stages
    from edgesplit.plan.search import SpecFacts, cut_points

    for n, conv in ((1, 60e9), (8, 12e9), (8, 60e9)):
        cluster = _cluster(n, 0.2, threads=5, conv_flops=conv)
        plan = make_plan(SPEC, cluster, "edgesplit")
        f, active = SpecFacts.of(SPEC), active_servers(cluster)
        each = {c: predict(SPEC, cluster, edgesplit_stages(f, cluster, active, stop=c) if c else [], c)
                .total_s for c in cut_points(SPEC)}
        assert plan.predicted.total_s == pytest.approx(min(each.values()), rel=1e-9)
        dads_s = dads(SPEC, cluster, threads=5).total_s + cluster.controller_overhead_s
        assert plan.predicted.total_s <= dads_s + 1e-12
        assert plan.edge_stop(SPEC) == (plan.stages[-1].stop if plan.stages else 0)
        again = type(plan).from_dict(plan.to_dict())
        assert again.cloud_from == plan.cloud_from and again.stages == plan.stages
    alone = make_plan(SPEC, _cluster(1, 0.2, conv_flops=60e9))  # one 0.2-core edge against a cloud core
    assert alone.cloud_from == 0 and alone.stages == ()
    paper_cut = make_plan(SPEC, _cluster(8, 0.2, threads=5))  # no cloud conv rate: convs stay on the edge
    assert paper_cut.cloud_from is None and paper_cut.stages[-1].stop == SPEC.n_edge


def test_a_cut_plan_becomes_a_route_whose_cloud_starts_at_the_cut() -> None:
    from services.orchestrator.routes import route_from_plan

    cluster = _cluster(8, 0.2, conv_flops=20e9)
    plan = make_plan(SPEC, cluster, "edgesplit")
    assert plan.cloud_from is not None and 0 < plan.cloud_from < SPEC.n_edge  # a cut inside the edge part
    route = route_from_plan(plan, SPEC, "static")
    assert route.cloud_from == plan.cloud_from and route.steps[-1].stop == plan.cloud_from
    assert [s.start for s in route.steps] == [s.start for s in plan.stages]


def test_fanout_cost_is_interpolated_filed_and_priced_per_stage() -> None:
    """A stage of n requests costs the measured fan-out for n (linear between the measured counts,
    0 for one request); the cluster file keeps it; a large one turns the planner from a split to the
    cloud, while the prediction of a stage grows by exactly the fan-out of its request count."""
    from edgesplit.plan.cluster import fanout_at
    from edgesplit.plan.planner import StagePlan
    from edgesplit.split import part_total

    points = ((2, 0.001), (4, 0.003), (8, 0.009))
    assert fanout_at(points, 1) == 0.0 and fanout_at((), 8) == 0.0
    assert fanout_at(points, 2) == pytest.approx(0.001) and fanout_at(points, 3) == pytest.approx(0.002)
    assert fanout_at(points, 6) == pytest.approx(0.006) and fanout_at(points, 10) == pytest.approx(0.012)
    base = _cluster(8, 0.2, threads=5, conv_flops=40e9)
    fan = replace(base, fanout_s=points)
    again = cluster_from_dict(cluster_to_dict(fan))
    assert again.fanout_s == points and again.fanout(6) == pytest.approx(0.006)
    with pytest.raises(InvalidInput, match="fanout_s"):
        cluster_from_dict({**cluster_to_dict(fan), "controller": {"fanout_s": {1: 0.5}}})
    total = part_total(SPEC, 0, 4, "rows")
    parts = tuple(total // 8 + (1 if i < total % 8 else 0) for i in range(8))
    stage = StagePlan(0, 4, "rows", tuple(range(8)), parts, (5,) * 8)
    plain, with_fan = predict(SPEC, base, [stage]), predict(SPEC, fan, [stage])
    assert with_fan.total_s - plain.total_s == pytest.approx(fan.fanout(8), rel=1e-9)
    split = make_plan(SPEC, base, "edgesplit")
    assert split.stages, "without a fan-out cost the planner splits on this cluster"
    costly = make_plan(SPEC, replace(base, fanout_s=((8, 0.05),)), "edgesplit")
    assert costly.cloud_from == 0 and costly.stages == ()


@pytest.mark.parametrize(("args", "names"), [
    (["--hosts", "40"], "at most 32"), (["--hosts", "x"], "--hosts 'x'"),
    (["--cloud-cpus", "0"], "cloud.cpus"), (["--models", "nope"], "unknown built-in model")])
def test_bench_testbed_refuses_bad_options_with_one_line(args: list[str], names: str) -> None:
    """``edgesplit bench testbed`` checks its options before it needs root or builds anything: exit 2
    and one line naming the value (a host count over the description's 32 gave a pydantic traceback)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tooling.cli", "bench", "testbed", *args, "--json"],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and names in lines[0], done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("prefix", ["", "..", "*", "../..", "docker/../..", "a", "ESTB", "es tb"])
@pytest.mark.parametrize("command", ["down", "status"])
def test_testbed_commands_refuse_a_prefix_not_theirs(command: str, prefix: str) -> None:
    """``down`` kills the processes of the prefix's cgroups and removes its state folder and Redis keys:
    an empty prefix named the cgroup mount itself (every process of the machine), ``..`` the state
    folder's parent and ``*`` every Redis key with a colon. Refused before anything else (root or not)."""
    from cli_helpers import command_app
    from typer.testing import CliRunner

    from tooling.testbed.commands import register

    result = CliRunner().invoke(command_app(register), ["testbed", command, "--prefix", prefix])
    assert isinstance(result.exception, InvalidInput), result.output
    assert str(result.exception).startswith(f"testbed prefix {prefix!r}: expected 2 to 6 lowercase")


def test_testbed_down_with_an_empty_prefix_is_one_line_and_status_2() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "tooling.cli", "testbed", "down", "--prefix", ""],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and lines == [
        "edgesplit: error: testbed prefix '': expected 2 to 6 lowercase letters and digits, starting with "
        "a letter (e.g. estb)"], done.stderr


def test_only_names_the_testbed_gives_are_its_own() -> None:
    """Namespaces, links and the cgroup are found by the exact names a testbed makes, never by a bare
    ``<prefix>-`` match or a group that another program named like the prefix (``docker``)."""
    from tooling.testbed import cgroups, net

    ns, link = net._ours("estb", net._NAMESPACE_NAMES), net._ours("estb", net._LINK_NAMES)
    assert all(ns.fullmatch(n) for n in ["estb-cloud", "estb-e0", "estb-e31", "estb-probe"])
    assert not any(ns.fullmatch(n) for n in ["estb-", "estb-other", "estb-e0x", "estbx-e0", "xestb-e0"])
    assert all(link.fullmatch(n) for n in ["estb-br", "estb-clh", "estb-e7h", "estb-tmp"])
    assert not any(link.fullmatch(n) for n in ["estb-e0", "estb-br0", "estb-eth0", "estb"])
    if Path("/sys/fs/cgroup").exists():
        assert cgroups.root("docker").name == "edgesplit-docker"
    with pytest.raises(InvalidInput, match="testbed prefix ''"):
        cgroups.root("")


def test_bench_testbed_checks_its_out_folder_before_measuring(tmp_path: Path) -> None:
    """``--out`` naming a file failed only when writing the results, after minutes of measuring."""
    import subprocess
    import sys

    taken = tmp_path / "taken"
    taken.write_text("a file")
    done = subprocess.run([sys.executable, "-m", "tooling.cli", "bench", "testbed", "--hosts", "1", "--out",
                           str(taken), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"edgesplit: error: {taken}: exists and is not a folder (expected a folder to write into)"]
