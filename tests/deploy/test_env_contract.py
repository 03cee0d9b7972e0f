"""One list of environment variables per role, the same in the Helm chart and docker-compose.yml, each
a field of the role's pydantic-settings class, and every value accepted by that class.

The values are checked by instantiating the real settings class with the environment a container
would get: literal values as rendered, Secret references resolved from the rendered Secret, the
downward API (pod name, namespace, CPU limit) resolved as the kubelet would, and the mounted paths
(/etc/edgesplit, /var/lib/edgesplit/weights) mapped to a scratch folder holding the ConfigMap's files.
"""

from __future__ import annotations

import base64
import importlib
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from services import tokens
from tests.deploy import support
from tests.deploy.conftest import Renderer

CI_IDS = [p.name for p in support.CI_VALUES]
MOUNTS = ("/etc/edgesplit", "/var/lib/edgesplit/weights")
EXISTING_SECRET = {
    "api-token": "existing-secret-api-token",
    "orchestrator-token": "existing-secret-orchestrator-token",
    "allocator-token": "existing-secret-allocator-token",
    "cloud-token": "existing-secret-cloud-token",
    "admin-token": "existing-secret-admin-token",
}
# what the token Job writes into edgesplit-auth (services.tokens.KEYS), for the settings to read
GENERATED = {key: f"generated-{key}-0123456789abcdef" for key in tokens.KEYS}


def prefix(role: str) -> str:
    return f"EDGESPLIT_{role.upper()}_"


def settings_class(role: str) -> type[BaseSettings]:
    """The pydantic-settings class of ``services/<role>/settings.py`` (the one with the role's prefix)."""
    module = importlib.import_module(f"services.{role}.settings")
    found = [
        c
        for c in vars(module).values()
        if isinstance(c, type)
        and issubclass(c, BaseSettings)
        and c.__module__ == module.__name__
        and c.model_config.get("env_prefix") == prefix(role)
    ]
    assert len(found) == 1, (
        f"services.{role}.settings should define one settings class with prefix {prefix(role)}"
    )
    return found[0]


def field_vars(role: str) -> set[str]:
    return {prefix(role) + name.upper() for name in settings_class(role).model_fields}


def chart_container(objs: list[support.Obj], role: str) -> tuple[support.Obj, support.Obj]:
    """(workload, container) running ``role`` in a rendered chart."""
    (workload,) = [
        o for o in objs if o["kind"] in ("Deployment", "StatefulSet") and support.component(o) == role
    ]
    (container,) = [c for _, c in support.containers(workload) if c["name"] == role]
    return workload, container


def chart_vars(objs: list[support.Obj], role: str) -> list[str]:
    return [e["name"] for e in chart_container(objs, role)[1]["env"] if e["name"].startswith(prefix(role))]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(support.COMPOSE.read_text()))


def compose_services(compose: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [s for s in compose["services"].values() if s.get("command") == [role]]


@pytest.mark.parametrize("role", support.ROLES)
def test_chart_and_compose_set_the_same_variables(
    role: str, rendered: Renderer, compose: dict[str, Any]
) -> None:
    chart = chart_vars(rendered(None), role)
    assert len(chart) == len(set(chart)), f"a variable is set twice: {chart}"
    services = compose_services(compose, role)
    assert services, f"no compose service runs {role}"
    for svc in services:
        names = {k for k in svc["environment"] if k.startswith(prefix(role))} | token_files(role)
        assert names == set(chart), (
            f"{role}: only in the chart {set(chart) - names}, only in compose {names - set(chart)}"
        )


@pytest.mark.parametrize("role", support.ROLES)
def test_every_variable_is_a_settings_field(role: str, rendered: Renderer) -> None:
    unknown = set(chart_vars(rendered(None), role)) - field_vars(role)
    assert not unknown, f"{role}: {sorted(unknown)} are not fields of {settings_class(role).__name__}"


@pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
def test_every_ci_scenario_sets_the_same_variables(ci_file: Path, rendered: Renderer) -> None:
    for role in support.ROLES:
        assert chart_vars(rendered(ci_file), role) == chart_vars(rendered(None), role), role


def _scratch_mounts(tmp_path: Path, files: dict[str, str]) -> dict[str, str]:
    """Folders standing in for the pod's mounts; ``files`` go under /etc/edgesplit."""
    mapping = {}
    for mount in MOUNTS:
        local = tmp_path / mount.strip("/").replace("/", "_")
        local.mkdir(parents=True, exist_ok=True)
        mapping[mount] = str(local)
    for rel, text in files.items():
        path = Path(mapping["/etc/edgesplit"]) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return mapping


def _remap(value: str, mounts: dict[str, str]) -> str:
    for mount, local in mounts.items():
        value = value.replace(mount, local)
    return value


def _resolve(
    entry: dict[str, Any], objs: list[support.Obj], container: dict[str, Any], workload: dict[str, Any]
) -> str | None:
    """The value the kubelet would give an env entry (None: left unset, an optional missing key)."""
    if "value" in entry:
        return str(entry["value"])
    source = entry["valueFrom"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        secrets = [s for s in support.find(objs, "Secret") if s["metadata"]["name"] == ref["name"]]
        data = (
            {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}
            if secrets
            else GENERATED if ref["name"] == "edgesplit-auth" else EXISTING_SECRET
        )
        assert ref["key"] in data or ref.get("optional"), f"{entry['name']}: no key {ref['key']}"
        return data.get(ref["key"])
    if "fieldRef" in source:
        return {
            "metadata.name": f"{workload['metadata']['name']}-0",
            "metadata.namespace": support.NAMESPACE,
        }[source["fieldRef"]["fieldPath"]]
    ref = source["resourceFieldRef"]
    assert ref["containerName"] == container["name"] and ref["resource"] == "limits.cpu"
    return str(math.ceil(support.cpu_cores(container["resources"]["limits"]["cpu"]) / float(ref["divisor"])))


def _instantiate(role: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                 secrets_dir: Path | None = None) -> BaseSettings:
    import os

    for name in [n for n in os.environ if n.startswith("EDGESPLIT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cls: Any = settings_class(role)
    return cls(_secrets_dir=secrets_dir) if secrets_dir is not None else cls()


@pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
@pytest.mark.parametrize("role", support.ROLES)
def test_chart_env_is_accepted_by_the_settings(
    role: str, ci_file: Path, rendered: Renderer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered(ci_file)
    values = support.values_for(ci_file)
    (cm,) = support.find(objs, "ConfigMap", "config")
    files = {"cluster.yaml": cm["data"]["cluster.yaml"]}
    files |= {f"models/{k[len('model.') :]}": v for k, v in cm["data"].items() if k.startswith("model.")}
    mounts = _scratch_mounts(tmp_path, files)
    workload, container = chart_container(objs, role)
    env = {}
    for entry in container["env"]:
        value = _resolve(entry, objs, container, workload)
        if value is not None:
            env[entry["name"]] = _remap(value, mounts)
    settings: Any = _instantiate(role, env, monkeypatch)
    assert settings.port == values[role]["port"]
    assert settings.host == "0.0.0.0"
    assert settings.token and len(settings.token) >= 16
    if role == "executor":  # capacity comes from the live cgroup CPU limit, not a frozen env value
        assert settings.threads is None
    if role == "orchestrator":
        assert (settings.mode, settings.pipeline) == (
            values["orchestrator"]["mode"],
            values["orchestrator"]["pipeline"],
        )
        if not values["auth"]["existingSecret"]:  # else whether the Secret holds an api-token decides
            assert settings.api_token == (values["auth"]["apiToken"] or GENERATED["api-token"])
            assert settings.cloud_token and settings.cloud_token != settings.token
    if role == "allocator":
        assert settings.kubernetes == values["allocator"]["kubernetes"]
        assert settings.executor_port == values["executor"]["port"]


def _compose_value(value: Any) -> str:
    """A compose environment value with ``${VAR:-default}`` interpolated as an unset VAR would be."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


@pytest.mark.parametrize("role", support.ROLES)
def test_compose_env_is_accepted_by_the_settings(
    role: str, compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = _scratch_mounts(tmp_path, {"cluster.yaml": compose["configs"]["cluster"]["content"]})
    secrets = tmp_path / "run-edgesplit"
    tokens.ensure_files(secrets)  # what the compose `tokens` service writes on the first start
    for svc in compose_services(compose, role):
        assert "tokens:/run/edgesplit:ro" in svc["volumes"]
        assert svc["depends_on"]["tokens"]["condition"] == "service_completed_successfully"
        env = {k: _remap(_compose_value(v), mounts) for k, v in svc["environment"].items()}
        settings: Any = _instantiate(role, env, monkeypatch, secrets)
        assert settings.host == "0.0.0.0" and settings.token


def token_files(role: str) -> set[str]:
    """The variables of ``role`` that compose sets from generated files, not in ``environment``."""
    return {name for name in tokens.FILES if name.startswith(prefix(role))}


def test_one_token_per_caller_and_none_ships(compose: dict[str, Any], tmp_path: Path) -> None:
    for svc in compose["services"].values():
        assert not [k for k in svc.get("environment", {}) if k.endswith("_TOKEN")]
    written = tokens.ensure_files(tmp_path)
    assert set(written) == {*tokens.FILES, tokens.REDIS_CONF} and tokens.ensure_files(tmp_path) == []
    password = (tmp_path / "EDGESPLIT_ORCHESTRATOR_REDIS_PASSWORD").read_text()
    assert (tmp_path / tokens.REDIS_CONF).read_text() == f"requirepass {password}\n"
    value = {name: (tmp_path / name).read_text() for name in tokens.FILES}
    assert value["EDGESPLIT_EXECUTOR_TOKEN"] == value["EDGESPLIT_ORCHESTRATOR_TOKEN"]
    assert value["EDGESPLIT_EXECUTOR_ALLOCATOR_TOKEN"] == value["EDGESPLIT_ALLOCATOR_TOKEN"]
    assert value["EDGESPLIT_CLOUD_TOKEN"] == value["EDGESPLIT_ORCHESTRATOR_CLOUD_TOKEN"]
    distinct = {value[n] for n in ("EDGESPLIT_ORCHESTRATOR_TOKEN", "EDGESPLIT_ALLOCATOR_TOKEN",
                                   "EDGESPLIT_CLOUD_TOKEN", "EDGESPLIT_ALLOCATOR_ADMIN_TOKEN",
                                   "EDGESPLIT_ORCHESTRATOR_API_TOKEN")}
    assert len(distinct) == 5


# --- the local stack (tooling/stack.py, `edgesplit up`) --------------------------------------------

STACK_ONLY = {"EDGESPLIT_EXECUTOR_THREADS"}  # no cgroup limit per local process: capacity set explicitly
STACK_API_TOKEN = "stack-api-token-0123456789abcdef"


def optional_vars(objs: list[support.Obj], role: str) -> set[str]:
    """Variables the chart leaves unset when their (optional) Secret key is missing."""
    return {
        e["name"]
        for e in chart_container(objs, role)[1]["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional")
    }


@pytest.fixture
def local_stack(tmp_path: Path) -> Any:
    from tooling.stack import AllocatorGroup, ExecutorGroup, LocalStack, StackSettings

    stack = LocalStack(StackSettings(
        models=("digits-cnn",), log_dir=tmp_path / "stack", executor=ExecutorGroup(count=2),
        allocator=AllocatorGroup(enabled=True)))
    stack.write_cluster()  # what start() writes first; nothing is started here
    stack.weights_dir.mkdir(parents=True, exist_ok=True)
    return stack


@pytest.mark.parametrize("role", support.ROLES)
def test_the_local_stack_sets_the_chart_and_compose_variables(
    role: str, rendered: Renderer, compose: dict[str, Any], local_stack: Any
) -> None:
    objs = rendered(None)
    chart = set(chart_vars(objs, role))
    for svc in compose_services(compose, role):
        assert {k for k in svc["environment"] if k.startswith(prefix(role))} | token_files(role) == chart
    extra = STACK_ONLY & field_vars(role)
    indices = range(local_stack.n_executors) if role == "executor" else [0]
    for index in indices:
        names = set(local_stack.role_env(role, index))
        assert names | optional_vars(objs, role) == chart | extra, (
            f"{role}: only in the chart {chart - names - optional_vars(objs, role)}, "
            f"only in the stack {names - chart - extra}"
        )


def test_the_local_stack_sets_the_api_token_when_it_has_one(rendered: Renderer, tmp_path: Path) -> None:
    from tooling.stack import LocalStack, OrchestratorGroup, StackSettings

    stack = LocalStack(StackSettings(
        models=("digits-cnn",), log_dir=tmp_path,
        orchestrator=OrchestratorGroup(extra={"api_token": STACK_API_TOKEN})))
    no_auth_redis = {"EDGESPLIT_ORCHESTRATOR_REDIS_PASSWORD"}  # the local redis-server has no password
    chart = set(chart_vars(rendered(None), "orchestrator"))
    assert set(stack.role_env("orchestrator")) | no_auth_redis == chart
    assert stack.role_env("orchestrator")["EDGESPLIT_ORCHESTRATOR_API_TOKEN"] == STACK_API_TOKEN


@pytest.mark.parametrize("role", support.ROLES)
def test_the_local_stack_env_is_accepted_by_the_settings(
    role: str, local_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = local_stack.role_env(role, 1 if role == "executor" else 0)
    settings: Any = _instantiate(role, env, monkeypatch)
    caller = {"cloud": local_stack.cloud_token, "allocator": local_stack.allocator_token}
    assert settings.host == "127.0.0.1" and settings.token == caller.get(role, local_stack.token)
    assert settings.models == ["digits-cnn"]
    if role == "executor":
        assert settings.port == local_stack.exec_ports[1] and settings.name == "executor-1"
        assert settings.threads == local_stack.threads
    if role == "orchestrator":
        assert settings.prefix == local_stack.prefix and settings.api_token is None
    if role == "allocator":
        assert settings.kubernetes is False and settings.admin_token == local_stack.admin_token
        assert settings.cluster_file == local_stack.cluster_path
