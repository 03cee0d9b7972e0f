"""Redis runs durably, the same way, wherever edgesplit runs it (chart, compose, local stack), and the
orchestrator gets the time to drain on termination (docs/ARCHITECTURE.md, Guarantees)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from tests.deploy import support
from tests.deploy.conftest import Renderer
from tooling.stack import redis_args

CI_IDS = [p.name for p in support.CI_VALUES]
DURABLE = {"--appendonly": "yes", "--save": "", "--maxmemory-policy": "noeviction"}


def _flags(args: list[str]) -> dict[str, str]:
    return {a: b for a, b in itertools.pairwise(args) if a.startswith("--")}


def _durable(args: list[str], fsync: str = "everysec") -> None:
    flags = _flags(args)
    assert {k: flags.get(k) for k in DURABLE} == DURABLE, args
    assert flags.get("--appendfsync") == fsync and flags.get("--maxmemory"), args


@pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
def test_the_chart_s_redis_keeps_an_append_only_file_on_a_volume(rendered: Renderer, ci_file: Path) -> None:
    values = support.values_for(ci_file)
    objs = rendered(ci_file)
    if not values["redis"]["enabled"]:
        assert not support.find(objs, "StatefulSet", "redis")
        return
    (sts,) = support.find(objs, "StatefulSet", "redis")
    (container,) = [c for _, c in support.containers(sts) if c["name"] == "redis"]
    _durable(container["args"], values["redis"]["appendfsync"])
    assert _flags(container["args"])["--dir"] == "/data"
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    assert claims == (["data"] if values["redis"]["persistence"]["enabled"] else [])


def test_redis_persistence_is_on_by_default() -> None:
    assert support.values_for(None)["redis"]["persistence"]["enabled"] is True


@pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
def test_the_orchestrator_has_the_time_to_drain(rendered: Renderer, ci_file: Path) -> None:
    (deploy,) = support.find(rendered(ci_file), "Deployment", "orchestrator")
    spec = deploy["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "orchestrator"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    http_grace = 5  # uvicorn's timeout_graceful_shutdown (services/common/serve.py)
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + http_grace + float(
        env["EDGESPLIT_ORCHESTRATOR_DRAIN_S"])


def test_compose_runs_redis_durably_and_stops_the_orchestrator_gently() -> None:
    services = yaml.safe_load(support.COMPOSE.read_text())["services"]
    redis = services["redis"]
    _durable(redis["command"][1:])
    assert any(v.endswith(":/data") for v in redis["volumes"])
    orch = services["orchestrator"]
    grace = int(orch["stop_grace_period"].rstrip("s"))
    assert grace >= 5 + float(orch["environment"]["EDGESPLIT_ORCHESTRATOR_DRAIN_S"])


def test_the_local_stack_runs_redis_as_the_chart_does(tmp_path: Path) -> None:
    args = redis_args(6390, tmp_path)
    _durable(args[1:])
    assert _flags(args)["--dir"] == str(tmp_path)
    _durable(redis_args(6390, tmp_path, fsync="always")[1:], "always")
