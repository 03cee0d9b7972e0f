"""``edgesplit plan`` and ``edgesplit bench plan``: JSON output and one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from cli_helpers import cli_json, command_app
from typer.testing import CliRunner

from edgesplit.errors import InvalidInput, InvalidPlan, ModelNotFound
from edgesplit.plan.cluster import dump_cluster, scenario
from edgesplit.plan.commands import register
from edgesplit.plan.planner import Plan


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return command_app(register)


def test_plan_json(app: typer.Typer) -> None:
    ours = cli_json(app, "plan", "--model", "alexnet-paper", "--scenario", "paper")
    paper = cli_json(app, "plan", "--model", "alexnet-paper", "--scenario", "paper", "--split", "paper")
    assert ours["plan"]["split"] == "edgesplit" and paper["plan"]["split"] == "paper"
    assert {s["strategy"] for s in paper["plan"]["stages"]} == {"kernel-rows"}
    assert ours["edge_ms"] <= paper["edge_ms"]
    plan = Plan.from_dict(ours["plan"])
    assert plan.predicted.total_s * 1e3 == pytest.approx(ours["total_ms"])
    for stage in ours["plan"]["stages"]:
        assert set(stage) >= {"start", "stop", "strategy", "servers", "parts", "threads"}


def test_plan_options(app: typer.Typer, tmp_path: Path) -> None:
    few = cli_json(app, "plan", "--model", "vgg16-paper", "--scenario", "edge-1g", "--servers", "3",
                "--seed", "4")
    assert few["servers"] == 3 and all(max(s["servers"]) < 3 for s in few["plan"]["stages"])
    excluded = cli_json(app, "plan", "--scenario", "paper", "--exclude", "ex0", "--exclude", "ex1")
    assert all(min(s["servers"]) >= 2 for s in excluded["plan"]["stages"])
    conv = cli_json(app, "plan", "--scenario", "paper", "--one-conv-per-group")
    assert len(conv["plan"]["stages"]) == 5
    path = tmp_path / "cluster.yaml"
    dump_cluster(scenario("edge-1g", 1, servers=4), path)
    from_file = cli_json(app, "plan", "--scenario", str(path))
    assert from_file["servers"] == 4


def test_plan_table(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["plan", "--model", "alexnet-paper", "--scenario", "edge-1g"])
    assert result.exit_code == 0
    assert "rows" in result.stdout and "ms" in result.stdout


@pytest.mark.parametrize(("args", "error"), [
    (["--servers", "0"], InvalidPlan),
    (["--model", "resnet-9000"], ModelNotFound),
    (["--scenario", "mars"], InvalidInput),
    (["--split", "magic"], InvalidPlan),
])
def test_plan_bad_input_raises_domain_errors(app: typer.Typer, args: list[str], error: type) -> None:
    result = CliRunner().invoke(app, ["plan", *args])
    assert isinstance(result.exception, error)


def test_cli_exits_non_zero_with_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "edgesplit.cli", "plan", "--servers", "0", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "edgesplit: error: the number of servers must be at least 1, got 0"]


@pytest.mark.parametrize(("args", "says"), [(["--bogus"], "No such option: --bogus"),
                                            (["--servers", "two"], "Invalid value for '--servers'")])
def test_cli_usage_errors_exit_2_without_a_traceback(args: list[str], says: str) -> None:
    """Typer raises its vendored click's usage errors, not click's own class: both end as click's
    usage message and status 2."""
    proc = subprocess.run([sys.executable, "-m", "edgesplit.cli", "plan", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert f"Error: {says}" in proc.stderr


SIGTERMED = """
import pathlib, sys, time
from edgesplit import cli

@cli.app.command("hold")
def hold(marker: str) -> None:
    try:
        print("holding", flush=True)
        time.sleep(60)
    finally:
        pathlib.Path(marker).write_text("cleaned up")

sys.argv = ["edgesplit", "hold", sys.argv[1]]
cli.run()
"""


def test_cli_sigterm_runs_the_commands_cleanup(tmp_path: Path) -> None:
    """SIGTERM (``kill``, ``timeout``) is handled as Ctrl-C: the command's ``finally`` runs (a testbed's
    hosts, a stack's processes are removed there) and the exit status is 143. Python's default ends the
    process at once, skipping it (status -15)."""
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", SIGTERMED, str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert marker.read_text() == "cleaned up"


def test_cli_exit_code_of_a_command_is_the_status() -> None:
    """``raise typer.Exit(1)`` (e.g. an exactness check that failed) ends the process with status 1;
    typer returns the code outside standalone mode, and it was dropped (status 0)."""
    script = ("import sys, typer\nfrom edgesplit import cli\n@cli.app.command('fail')\n"
              "def fail() -> None:\n    raise typer.Exit(3)\nsys.argv = ['edgesplit', 'fail']\ncli.run()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr


def test_cli_out_naming_a_file_is_one_line(tmp_path: Path) -> None:
    """``--out`` naming a file (not a folder): one line and status 2, not an OSError traceback."""
    target = tmp_path / "taken"
    target.write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "edgesplit.cli", "reproduce", "all", "--out", str(target),
                           "--quick"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"edgesplit: error: {target}: exists and is not a folder (expected a folder to write into)"]


@pytest.mark.parametrize(("args", "says"), [
    (["up", "--models", "alexnet-paper,nosuch"], "edgesplit: error: unknown model 'nosuch'"),
    (["up", "--port", "70000"], "Invalid value for '--port'"),
    (["up", "--prefix", "*"], "edgesplit: error: --prefix '*': expected 1 to 64 letters"),
    (["up", "--redis-url", "http://x"], "edgesplit: error: --redis-url 'http://x': expected redis://"),
])
def test_up_refuses_bad_options_before_starting_anything(args: list[str], says: str) -> None:
    """Checked before any process starts: one line and status 2 (an unknown model was the cloud's
    start-up failure, a port above 65535 a socket OverflowError, both as tracebacks; a key prefix of
    ``*`` made the stack delete every key of the Redis when it stopped)."""
    proc = subprocess.run([sys.executable, "-c", "from tooling.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_bench_plan_json(app: typer.Typer) -> None:
    report = cli_json(app, "bench", "plan", "--repeats", "1")
    rows = {(c["model"], c["scenario"]): c for c in report["comparisons"]}
    assert set(rows) == {(m, s) for m in ("alexnet-paper", "vgg16-paper") for s in ("paper", "edge-1g")}
    assert all(c["ours_edge_ms"] <= c["paper_edge_ms"] for c in rows.values())
    assert {p["servers"] for p in report["planner_wall"]} == {8, 64}
    for s in report["split_wall"]:
        assert s["parts_sum"] == [s["units"], s["units"]]
        assert s["algorithm1_bottleneck_ms"] >= s["optimal_bottleneck_ms"] * (1 - 1e-12)
