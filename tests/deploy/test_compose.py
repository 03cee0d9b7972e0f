"""docker-compose.yml: valid against the Compose Specification's JSON schema, and wired as documented.

The schema is vendored in tests/deploy/schemas/compose-spec.json (see schemas/README.md for its
source and licence), so this check needs no network and no Docker engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edgesplit.plan.cluster import cluster_from_dict
from tests.deploy import support

SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
EXECUTORS = ("executor-0", "executor-1", "executor-2")
EDGESPLIT_SERVICES = ("cloud", *EXECUTORS, "orchestrator", "allocator")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(support.COMPOSE.read_text()))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_compose_matches_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)


def test_the_schema_catches_a_typo(
    compose: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["cloud"]["cpu"] = 2  # `cpus` misspelt
    assert list(validator.iter_errors(broken))


def test_services_and_startup_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "tokens", *EDGESPLIT_SERVICES}
    # the one-shot token generator runs before every edgesplit service (and has no healthcheck)
    assert services["tokens"]["command"] == ["python", "-m", "services.tokens", "files", "/run/edgesplit"]
    for name, svc in services.items():
        if name == "tokens":
            continue
        assert "healthcheck" in svc and svc["healthcheck"]["test"][0] == "CMD", name
        for dep, cond in svc.get("depends_on", {}).items():
            want = "service_completed_successfully" if dep == "tokens" else "service_healthy"
            assert cond == {"condition": want}, f"{name} -> {dep}"
    assert set(services["orchestrator"]["depends_on"]) == {"tokens", "redis", "cloud", *EXECUTORS}
    assert {"redis", "orchestrator"} <= set(services["allocator"]["depends_on"])


def test_only_the_orchestrator_publishes_a_port(compose: dict[str, Any]) -> None:
    published = {n for n, s in compose["services"].items() if s.get("ports")}
    assert published == {"orchestrator"}
    assert compose["services"]["orchestrator"]["ports"] == ["127.0.0.1:8080:8080"]


def test_executor_cpus_equal_their_threads(compose: dict[str, Any]) -> None:
    cluster = cluster_from_dict(yaml.safe_load(compose["configs"]["cluster"]["content"]))
    for server in cluster.servers:
        svc = compose["services"][server.name]
        # the executor reads its capacity from the cgroup limit that `cpus:` sets
        assert float(svc["cpus"]) == server.threads
        assert "EDGESPLIT_EXECUTOR_THREADS" not in svc["environment"]
        assert svc["environment"]["EDGESPLIT_EXECUTOR_NAME"] == server.name
        assert server.url == f"http://{server.name}:{svc['environment']['EDGESPLIT_EXECUTOR_PORT']}"
    assert [s.name for s in cluster.servers] == list(EXECUTORS)
    cloud = compose["services"]["cloud"]
    assert cluster.cloud.url == f"http://cloud:{cloud['environment']['EDGESPLIT_CLOUD_PORT']}"
    assert float(cloud["cpus"]) == int(cloud["environment"]["EDGESPLIT_CLOUD_THREADS"])


def test_edgesplit_containers_are_locked_down(compose: dict[str, Any]) -> None:
    for name in (*EDGESPLIT_SERVICES, "redis"):
        svc = compose["services"][name]
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert not str(svc["user"]).startswith("0"), name
        assert "cpus" in svc and "mem_limit" in svc, name
        assert not svc.get("privileged"), name
    for name in EDGESPLIT_SERVICES:
        svc = compose["services"][name]
        assert svc["image"] == "edgesplit:0.1.0" and svc["build"]["dockerfile"] == "docker/Dockerfile"
        assert svc["command"] == [name.split("-")[0]]


def test_tokens_are_never_literal(compose: dict[str, Any]) -> None:
    for name in EDGESPLIT_SERVICES:
        for key, value in compose["services"][name]["environment"].items():
            if key.endswith("TOKEN"):
                assert str(value).startswith("${EDGESPLIT_"), (
                    f"{name}: {key} should come from the environment"
                )
