"""The "Deploy on kind" instructions name the real artifacts: cluster name, image tag, objects, ports."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy import support
from tests.deploy.conftest import Renderer

HEADING = "## Deploy on kind"


@pytest.fixture(scope="module")
def section() -> str:
    """The "Deploy on kind" section of README.md."""
    text = (support.ROOT / "README.md").read_text()
    assert HEADING in text, f"no '{HEADING}' section in README.md"
    return text.split(HEADING, 1)[1].split("\n## ", 1)[0]


def test_every_step_is_there(section: str) -> None:
    for command in (
        "kind create cluster --config k8s/kind-cluster.yaml",
        "docker build -f docker/Dockerfile -t edgesplit:0.1.0 .",
        "kind load docker-image edgesplit:0.1.0 --name edgesplit",
        "helm install edgesplit charts/edgesplit --namespace edgesplit",
        "kubectl -n edgesplit port-forward svc/edgesplit-orchestrator 8080:8080",
        'curl -s -X POST "$EDGESPLIT_URL/v1/tasks?model=alexnet-paper&priority=1" -F image=@sample.png',
        "docker compose up",
        "kubectl apply -k k8s/base",
    ):
        assert command in section, command


def test_names_match_the_artifacts(section: str, rendered: Renderer) -> None:
    kind_cfg = yaml.safe_load((support.K8S / "kind-cluster.yaml").read_text())
    chart = yaml.safe_load((support.CHART / "Chart.yaml").read_text())
    assert f"--name {kind_cfg['name']}" in section
    assert f"edgesplit:{chart['appVersion']}" in section
    objs = rendered(None)
    (svc,) = [s for s in support.find(objs, "Service", "orchestrator")]
    port = svc["spec"]["ports"][0]["port"]
    assert f"svc/{svc['metadata']['name']} 8080:{port}" in section
    for name in re.findall(r"(?:deploy|statefulset|job)/(edgesplit-[a-z]+)", section):
        assert name in {o["metadata"]["name"] for o in objs} | {"edgesplit-loadtest"}, name


def test_documented_variables_are_the_chart_s(section: str, rendered: Renderer) -> None:
    objs = rendered(None)
    for role in support.ROLES:
        (row,) = [line for line in section.splitlines() if line.startswith(f"| {role} | `")]
        documented = set(row.split("`")[1].split())
        workload = next(
            o for o in objs if o["kind"] in ("Deployment", "StatefulSet") and support.component(o) == role
        )
        prefix = f"EDGESPLIT_{role.upper()}_"
        env = {
            e["name"][len(prefix) :]
            for _, c in support.containers(workload)
            for e in c["env"]
            if e["name"].startswith(prefix)
        }
        assert documented == env, f"{role}: documented {documented ^ env} differ"
