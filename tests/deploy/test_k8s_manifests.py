"""Every file in k8s/: the kind cluster config, the kustomization, and plain manifests that are valid
Kubernetes (strict schemas of 1.33 and 1.35) and exactly the chart's default rendering."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy import render_k8s, support

KIND_CONFIG = support.K8S / "kind-cluster.yaml"
KUSTOMIZATION = render_k8s.BASE / "kustomization.yaml"
MANIFESTS = sorted(p for p in render_k8s.BASE.glob("*.yaml") if p != KUSTOMIZATION)
KIND_NODE_KEYS = {"role", "image", "labels", "extraMounts", "extraPortMappings", "kubeadmConfigPatches"}


def test_every_file_in_k8s_is_checked() -> None:
    files = {p for p in support.K8S.rglob("*") if p.is_file()}
    assert files == {KIND_CONFIG, KUSTOMIZATION, *MANIFESTS}, "a file in k8s/ that no test reads"
    assert all(p.suffix == ".yaml" for p in files)


def test_kind_cluster_has_one_control_plane_and_three_workers() -> None:
    cfg = yaml.safe_load(KIND_CONFIG.read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker"]
    for node in cfg["nodes"]:
        assert set(node) <= KIND_NODE_KEYS, f"unknown kind node keys {set(node) - KIND_NODE_KEYS}"
    assert cfg["name"] == "edgesplit"


def test_kustomization_lists_every_manifest() -> None:
    k = yaml.safe_load(KUSTOMIZATION.read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    assert k["namespace"] == support.NAMESPACE
    assert sorted(k["resources"]) == sorted(p.name for p in MANIFESTS)


@pytest.mark.parametrize("kube_version", support.KUBE_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_validates_strict(path: Path, kube_version: str) -> None:
    docs = support.load_yaml_docs(path)
    assert docs, f"{path} is empty"
    for obj in docs:
        kubernetes_validate.validate(obj, kube_version, strict=True)
        assert obj["metadata"].get("namespace", support.NAMESPACE) == support.NAMESPACE


def test_manifests_are_the_chart_rendering(helm_home: Path) -> None:
    """k8s/base is what `python -m tests.deploy.render_k8s` writes from the chart (no drift)."""
    wanted = render_k8s.texts(helm_home)
    assert sorted(wanted) == sorted(p.name for p in render_k8s.BASE.glob("*.yaml"))
    for name, text in wanted.items():
        committed = list(yaml.safe_load_all((render_k8s.BASE / name).read_text()))
        assert committed == list(yaml.safe_load_all(text)), (
            f"k8s/base/{name} differs from the chart: run .venv/bin/python -m tests.deploy.render_k8s"
        )


def test_manifests_carry_no_helm_labels() -> None:
    for path in MANIFESTS:
        text = path.read_text()
        assert "helm.sh/chart" not in text and "managed-by: Helm" not in text, path.name


def test_namespace_enforces_restricted_pod_security() -> None:
    (ns,) = support.load_yaml_docs(render_k8s.BASE / "namespace.yaml")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for path in MANIFESTS:
        for obj in support.load_yaml_docs(path):
            pod = support.pod_spec(obj)
            if pod is None:
                continue
            kinds = {k for v in pod.get("volumes", []) for k in v if k != "name"}
            assert kinds <= support.RESTRICTED_VOLUMES, (
                f"{obj['metadata']['name']} mounts {kinds - support.RESTRICTED_VOLUMES}"
            )
