"""Write ``k8s/base/`` (plain manifests for kustomize) from the Helm chart, so the two never drift.

    .venv/bin/python -m tests.deploy.render_k8s          # rewrite k8s/base from the chart
    .venv/bin/python -m tests.deploy.render_k8s --check  # exit 1 when k8s/base differs

The chart's defaults are rendered as release ``edgesplit`` in namespace ``edgesplit`` (no token: the
chart's token Job generates them in the cluster at the first apply, and Helm's hook annotations are
dropped, so it runs as an ordinary Job), Helm's own labels are replaced by
``app.kubernetes.io/managed-by: kustomize``, and the objects are grouped into one file per component.
``tests/deploy/test_k8s_manifests.py`` checks that k8s/base is exactly this rendering.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import support

BASE = support.K8S / "base"
VALUES: list[str] = []  # the chart's defaults
FILES = ("namespace", "config", "redis", "executor", "cloud", "orchestrator", "allocator")
HEADER = (
    "# Generated from charts/edgesplit by `python -m tests.deploy.render_k8s`: do not edit by hand,\n"
    "# change the chart and regenerate (tests/deploy checks that the two agree).\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (the cluster description stays readable)."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _relabel(labels: dict[str, str]) -> None:
    labels.pop("helm.sh/chart", None)
    if "app.kubernetes.io/managed-by" in labels:
        labels["app.kubernetes.io/managed-by"] = "kustomize"


def plain(obj: dict[str, Any]) -> dict[str, Any]:
    """A rendered object without Helm's labels (in metadata and in pod templates)."""
    _relabel(obj["metadata"].get("labels", {}))
    notes = obj["metadata"].get("annotations", {})
    for key in [k for k in notes if k.startswith("helm.sh/")]:
        del notes[key]
    if "annotations" in obj["metadata"] and not notes:
        del obj["metadata"]["annotations"]
    template = obj.get("spec", {}).get("template")
    if isinstance(template, dict):
        _relabel(template.get("metadata", {}).get("labels", {}))
    return obj


def namespace() -> dict[str, Any]:
    """The namespace, with the restricted Pod Security Standard enforced (every edgesplit pod meets it)."""
    labels = {
        "app.kubernetes.io/part-of": "edgesplit",
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": support.NAMESPACE, "labels": labels},
    }


def manifests(helm_home: Path) -> dict[str, list[dict[str, Any]]]:
    """File name (without .yaml) -> its objects, in a stable order."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in FILES}
    groups["namespace"].append(namespace())
    for obj in support.render(helm_home, sets=VALUES):
        comp = support.component(obj)
        groups["config" if comp in ("config", "auth", "tokens") else str(comp)].append(plain(obj))
    return groups


def kustomization() -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": support.NAMESPACE,
        "resources": [f"{name}.yaml" for name in FILES],
    }


def texts(helm_home: Path) -> dict[str, str]:
    """File name -> the text k8s/base should hold."""
    out = {}
    for name, objs in manifests(helm_home).items():
        body = yaml.dump_all(objs, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=110)
        out[f"{name}.yaml"] = HEADER + body
    out["kustomization.yaml"] = HEADER + yaml.dump(kustomization(), Dumper=_Dumper, sort_keys=False)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        wanted = texts(Path(home))
    stale = sorted(n for n, t in wanted.items() if not (BASE / n).is_file() or (BASE / n).read_text() != t)
    extra = sorted(p.name for p in BASE.glob("*") if p.name not in wanted) if BASE.is_dir() else []
    if args.check:
        for name in [*stale, *extra]:
            print(f"k8s/base/{name} differs from the chart", file=sys.stderr)
        return 1 if stale or extra else 0
    BASE.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (BASE / name).write_text(wanted[name])
    for name in extra:
        (BASE / name).unlink()
    print(f"k8s/base: {len(stale)} written, {len(extra)} removed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
