"""What the rendered chart must guarantee, read from the objects of every ci scenario.

Limits, probes and a non-root, locked-down security context on every container; executor CPU limit =
the zone threads from values; RBAC no wider than pods get/list/watch and pods/resize patch; selectors
made only of ``app.kubernetes.io/*`` labels; NetworkPolicies that admit only the orchestrator and
the allocator to executors, cloud and Redis; a cluster description the planner accepts.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgesplit.models import spec_from_dict
from edgesplit.plan.cluster import cluster_from_dict
from tests.deploy import support
from tests.deploy.conftest import Renderer

CI_IDS = [p.name for p in support.CI_VALUES]
ci = pytest.mark.parametrize("ci_file", support.CI_VALUES, ids=CI_IDS)
ALLOWED_RBAC = {
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "pods/resize", "patch"),
}
# the token Job's Role: create its Secret, read and complete only that one
TOKENS_RBAC = {("", "secrets", "create"), ("", "secrets", "get"), ("", "secrets", "patch")}


def _selectors(obj: support.Obj) -> list[dict[str, Any]]:
    """Every label selector an object carries (as {key: value} or matchExpressions keys)."""
    out: list[dict[str, Any]] = []

    def add(sel: dict[str, Any] | None) -> None:
        if sel is None:
            return
        if "matchLabels" in sel or "matchExpressions" in sel:
            keys = dict(sel.get("matchLabels", {}))
            keys.update({e["key"]: e.get("values") for e in sel.get("matchExpressions", [])})
            out.append(keys)
        else:
            out.append(dict(sel))

    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
        add(spec.get("selector"))
    if obj["kind"] == "Service":
        add(spec.get("selector"))
    if obj["kind"] == "NetworkPolicy":
        add(spec.get("podSelector"))
        for rule in spec.get("ingress", []):
            for peer in rule.get("from", []):
                add(peer.get("podSelector"))
    pod = support.pod_spec(obj)
    if pod:
        affinity = pod.get("affinity", {})
        for kind in ("podAffinity", "podAntiAffinity"):
            for term in affinity.get(kind, {}).get("requiredDuringSchedulingIgnoredDuringExecution", []):
                add(term.get("labelSelector"))
            for weighted in affinity.get(kind, {}).get("preferredDuringSchedulingIgnoredDuringExecution", []):
                add(weighted["podAffinityTerm"].get("labelSelector"))
        for tsc in pod.get("topologySpreadConstraints", []):
            add(tsc.get("labelSelector"))
    return out


@ci
def test_every_container_has_limits_and_probes(ci_file: Path, rendered: Renderer) -> None:
    problems = []
    for obj in rendered(ci_file):
        for pod, c in support.containers(obj):
            where = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            limits = c.get("resources", {}).get("limits", {})
            requests = c.get("resources", {}).get("requests", {})
            if not {"cpu", "memory"} <= set(limits) or not {"cpu", "memory"} <= set(requests):
                problems.append(f"{where}: cpu and memory requests and limits, got {c.get('resources')}")
            elif support.cpu_cores(requests["cpu"]) > support.cpu_cores(limits["cpu"]):
                problems.append(f"{where}: cpu request above its limit")
            init = c in pod.get("initContainers", [])  # Kubernetes forbids probes on init containers
            init = init or support.component(obj) == "tokens"  # a one-shot Job done in seconds
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c and not init:
                    problems.append(f"{where}: no {probe}")
    assert not problems, "\n".join(problems)


@ci
def test_every_container_runs_non_root_and_locked_down(ci_file: Path, rendered: Renderer) -> None:
    problems = []
    for obj in rendered(ci_file):
        for pod, c in support.containers(obj):
            where = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
            effective = {**psc, **csc}
            checks = {
                "runAsNonRoot": effective.get("runAsNonRoot") is True,
                "runAsUser != 0": effective.get("runAsUser", 1) != 0,
                "allowPrivilegeEscalation: false": csc.get("allowPrivilegeEscalation") is False,
                "readOnlyRootFilesystem": csc.get("readOnlyRootFilesystem") is True,
                "drop ALL": "ALL" in csc.get("capabilities", {}).get("drop", []),
                "no added capabilities": not csc.get("capabilities", {}).get("add"),
                "seccomp RuntimeDefault": effective.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                "not privileged": not csc.get("privileged", False),
            }
            problems += [f"{where}: {name}" for name, ok in checks.items() if not ok]
            if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
                problems.append(f"{where}: uses the host's namespaces")
    assert not problems, "\n".join(problems)


@ci
def test_executor_cpu_limit_is_the_zone_threads(ci_file: Path, rendered: Renderer) -> None:
    values = support.values_for(ci_file)
    threads = values["executor"]["threads"]
    (sts,) = support.find(rendered(ci_file), "StatefulSet", "executor")
    assert sts["spec"]["replicas"] == values["executor"]["replicas"]
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert support.cpu_cores(c["resources"]["limits"]["cpu"]) == threads
    assert support.cpu_cores(c["resources"]["requests"]["cpu"]) < threads, (
        "Burstable: resizable without QoS change"
    )
    assert {"resourceName": "cpu", "restartPolicy": "NotRequired"} in c["resizePolicy"]
    env = {e["name"]: e for e in c["env"]}
    # capacity follows the live cgroup limit, so an in-place resize raises it without a restart
    assert "EDGESPLIT_EXECUTOR_THREADS" not in env


@ci
def test_executors_are_a_statefulset_behind_a_headless_service(ci_file: Path, rendered: Renderer) -> None:
    objs = rendered(ci_file)
    (sts,) = support.find(objs, "StatefulSet", "executor")
    svc = [
        s
        for s in support.find(objs, "Service", "executor")
        if s["metadata"]["name"] == sts["spec"]["serviceName"]
    ]
    assert svc and svc[0]["spec"]["clusterIP"] == "None"
    anti = support.values_for(ci_file)["executor"]["podAntiAffinity"]
    affinity = sts["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity", {})
    if anti == "hard":
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
    elif anti == "soft":
        (term,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
        assert (
            term["podAffinityTerm"]["labelSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
        )
    else:
        assert not affinity


@ci
def test_rbac_grants_only_pod_reads_and_resize(ci_file: Path, rendered: Renderer) -> None:
    objs = rendered(ci_file)
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    values = support.values_for(ci_file)
    tokens = support.find(objs, "Role", "tokens")
    assert len(tokens) == (0 if values["auth"]["existingSecret"] else 1)
    for role in tokens:
        rules = {(g, r, v): rule.get("resourceNames") for rule in role["rules"] for g in rule["apiGroups"]
                 for r in rule["resources"] for v in rule["verbs"]}
        assert set(rules) == TOKENS_RBAC
        assert rules[("", "secrets", "get")] == rules[("", "secrets", "patch")] == ["edgesplit-auth"]
    roles = support.find(objs, "Role", "allocator")
    assert len(roles) == (1 if values["allocator"]["rbac"]["create"] else 0)
    for role in roles:
        granted = {
            (g, r, v)
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }
        assert granted <= ALLOWED_RBAC, f"{role['metadata']['name']} grants {granted - ALLOWED_RBAC}"
        assert not any("*" in str(rule) for rule in role["rules"])
        (resize,) = [rule for rule in role["rules"] if "pods/resize" in rule["resources"]]
        n = values["executor"]["replicas"]
        assert resize["resourceNames"] == [f"edgesplit-executor-{i}" for i in range(n)]
    for rb in support.find(objs, "RoleBinding", "allocator"):
        assert rb["roleRef"]["name"] in {r["metadata"]["name"] for r in roles}
        (subject,) = rb["subjects"]
        (alloc,) = support.find(objs, "Deployment", "allocator")
        assert subject["name"] == alloc["spec"]["template"]["spec"]["serviceAccountName"]


@ci
def test_only_the_allocator_gets_an_api_token(ci_file: Path, rendered: Renderer) -> None:
    kubernetes = support.values_for(ci_file)["allocator"]["kubernetes"]
    for obj in rendered(ci_file):
        pod = support.pod_spec(obj)
        if pod is None:
            continue
        # the allocator (in Kubernetes mode) and the token Job, which writes the Secret of tokens
        wants = (kubernetes and support.component(obj) == "allocator") or support.component(obj) == "tokens"
        assert pod.get("automountServiceAccountToken") is wants, obj["metadata"]["name"]


@ci
def test_selectors_use_only_recommended_labels(ci_file: Path, rendered: Renderer) -> None:
    objs = rendered(ci_file)
    for obj in objs:
        for sel in _selectors(obj):
            assert sel, f"{obj['kind']}/{obj['metadata']['name']}: empty selector"
            bad = [k for k in sel if not k.startswith("app.kubernetes.io/")]
            assert not bad, f"{obj['kind']}/{obj['metadata']['name']} selects on {bad}"
    for obj in objs:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()


@ci
def test_services_select_one_workload_and_name_its_ports(ci_file: Path, rendered: Renderer) -> None:
    objs = rendered(ci_file)
    workloads = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")]
    for svc in support.find(objs, "Service"):
        sel = svc["spec"]["selector"].items()
        (target,) = [w for w in workloads if sel <= w["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["name"] for _, c in support.containers(target) for p in c.get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


@ci
def test_network_policy_admits_only_orchestrator_and_allocator(ci_file: Path, rendered: Renderer) -> None:
    values = support.values_for(ci_file)
    objs = rendered(ci_file)
    policies = {support.component(p): p for p in support.find(objs, "NetworkPolicy")
                if p["spec"]["policyTypes"] == ["Ingress"]}
    if not values["networkPolicy"]["enabled"]:
        assert not policies
        return
    protected = {"executor", "cloud"} | ({"redis"} if values["redis"]["enabled"] else set())
    assert set(policies) == protected
    pods = {
        support.component(w): w["spec"]["template"]["metadata"]["labels"]
        for w in objs
        if w["kind"] in ("Deployment", "StatefulSet")
    }
    for comp, policy in policies.items():
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        assert spec["podSelector"]["matchLabels"].items() <= pods[comp].items()
        (rule,) = spec["ingress"]
        admitted = set()
        for peer in rule["from"][:1]:
            assert set(peer) == {"podSelector"}, "the first peer is this release's pods only"
            (expr,) = peer["podSelector"]["matchExpressions"]
            assert expr["key"] == "app.kubernetes.io/component" and expr["operator"] == "In"
            admitted |= set(expr["values"])
            assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == support.RELEASE
        assert admitted == {"orchestrator", "allocator"}
        assert len(rule["from"]) == 1 + len(values["networkPolicy"]["extraFrom"])


@ci
def test_egress_policies_let_each_role_reach_only_what_it_calls(ci_file: Path, rendered: Renderer) -> None:
    values = support.values_for(ci_file)
    objs = rendered(ci_file)
    egress = {support.component(p): p["spec"] for p in support.find(objs, "NetworkPolicy")
              if p["spec"]["policyTypes"] == ["Egress"]}
    if not values["networkPolicy"]["enabled"]:
        assert not egress
        return
    pods = {support.component(w) for w in objs if support.pod_spec(w) is not None}
    assert pods <= set(egress), f"pods without an egress policy: {pods - set(egress)}"
    for comp, spec in egress.items():
        reach: set[tuple[str, int]] = set()
        for rule in spec["egress"]:
            ports = {p["port"] for p in rule["ports"]}
            if not rule.get("to"):
                reach |= {("any", p) for p in ports}
            for peer in rule.get("to", []):
                target = peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                reach |= {(target, p) for p in ports}
        assert {("any", 53)} <= reach, comp  # DNS
        called = {c for c, _ in reach if c != "any"}
        anywhere = {p for c, p in reach if c == "any"} - {53}
        want = {"orchestrator": {"executor", "cloud", "redis"}, "allocator": {"executor", "redis"},
                "loadtest": {"orchestrator"}}.get(comp, set())
        if not values["redis"]["enabled"]:
            want -= {"redis"}
            if comp in ("orchestrator", "allocator"):
                assert 6379 in anywhere, comp  # the external Redis, wherever it is
                anywhere -= {6379}
        assert called == want, comp
        kube_api = comp == "tokens" or (comp == "allocator" and values["allocator"]["kubernetes"])
        assert anywhere == ({443, 6443} if kube_api else set()), comp


@ci
def test_cluster_description_is_what_the_planner_reads(ci_file: Path, rendered: Renderer) -> None:
    values = support.values_for(ci_file)
    (cm,) = support.find(rendered(ci_file), "ConfigMap", "config")
    cluster = cluster_from_dict(yaml.safe_load(cm["data"]["cluster.yaml"]))
    n = values["executor"]["replicas"]
    assert [s.name for s in cluster.servers] == [f"edgesplit-executor-{i}" for i in range(n)]
    port = values["executor"]["port"]
    assert [s.url for s in cluster.servers] == [
        f"http://edgesplit-executor-{i}.edgesplit-executor:{port}" for i in range(n)
    ]
    assert all(s.threads == values["executor"]["threads"] for s in cluster.servers)
    assert cluster.cloud.url == f"http://edgesplit-cloud:{values['cloud']['service']['port']}"
    specs = [spec_from_dict(json.loads(text)) for text in values["modelFiles"].values()]
    assert list(cluster.models) == [*values["models"], *[s.name for s in specs]]
    for name in values["modelFiles"]:
        assert json.loads(cm["data"][f"model.{name}"])["name"] in cluster.models


@ci
def test_tokens_are_generated_in_the_cluster_or_given(ci_file: Path, rendered: Renderer) -> None:
    """No token is rendered unless given as a value: the token Job generates the rest (Secret
    ``edgesplit-auth``), so ``helm template`` holds no secret and renders the same twice."""
    values = support.values_for(ci_file)
    objs = rendered(ci_file)
    secrets = support.find(objs, "Secret")
    given = {k: v for k, v in values["auth"].items() if k.endswith("Token") and v}
    if values["auth"]["existingSecret"] or not given:
        assert not secrets
    else:
        (secret,) = secrets
        assert secret["metadata"]["name"] == "edgesplit-auth-values"
        tokens = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert sorted(tokens.values()) == sorted(given.values())
    jobs = support.find(objs, "Job", "tokens")
    assert len(jobs) == (0 if values["auth"]["existingSecret"] else 1)
    for job in jobs:
        args = support.pod_spec(job)["containers"][0]["args"]
        assert args[:4] == ["python", "-m", "services.tokens", "secret"] and "edgesplit-auth" in args
    keys = set()
    for obj in objs:
        for _, c in support.containers(obj):
            for e in c.get("env", []):
                if e["name"].endswith("TOKEN"):
                    assert "value" not in e, f"{e['name']} is a literal"
                    ref = e["valueFrom"]["secretKeyRef"]
                    keys.add((e["name"], ref["key"]))
                    assert ref["name"] in {values["auth"]["existingSecret"], "edgesplit-auth",
                                           "edgesplit-auth-values"} - {""}
    by_caller = {"EDGESPLIT_EXECUTOR_TOKEN": "orchestrator-token", "EDGESPLIT_ORCHESTRATOR_TOKEN":
                 "orchestrator-token", "EDGESPLIT_EXECUTOR_ALLOCATOR_TOKEN": "allocator-token",
                 "EDGESPLIT_ALLOCATOR_TOKEN": "allocator-token", "EDGESPLIT_CLOUD_TOKEN": "cloud-token",
                 "EDGESPLIT_ORCHESTRATOR_CLOUD_TOKEN": "cloud-token"}
    assert set(by_caller.items()) <= keys  # one token per caller (issue 15)


def test_helm_template_is_deterministic(rendered: Renderer, helm_home: Path) -> None:
    first = support.render(helm_home)
    assert first == support.render(helm_home)


@ci
def test_edgesplit_containers_share_one_image(ci_file: Path, rendered: Renderer) -> None:
    values = support.values_for(ci_file)
    images = {
        c["image"]
        for o in rendered(ci_file)
        for _, c in support.containers(o)
        if support.component(o) != "redis"
    }
    repo = "/".join(p for p in (values["image"]["registry"], values["image"]["repository"]) if p)
    assert images == {f"{repo}:{values['image']['tag'] or '0.1.0'}"}


def test_ingress_and_loadtest_target_the_orchestrator(rendered: Renderer) -> None:
    objs = rendered(support.CHART / "ci" / "ingress-locust-values.yaml")
    (ing,) = support.find(objs, "Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "edgesplit-orchestrator", "port": {"number": 8080}}
    assert ing["spec"]["tls"][0]["secretName"] == "edgesplit-tls"
    (job,) = support.find(objs, "Job", "loadtest")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["locust", "--host", "http://edgesplit-orchestrator:8080"]
    assert args[-2:] == ["TaskCustomer", "V2Customer"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    (pdb,) = support.find(objs, "PodDisruptionBudget", "orchestrator")
    assert pdb["spec"]["maxUnavailable"] == 1


@ci
def test_pods_meet_the_restricted_pod_security_standard_volumes(ci_file: Path, rendered: Renderer) -> None:
    allowed = support.RESTRICTED_VOLUMES
    for obj in rendered(ci_file):
        pod = support.pod_spec(obj)
        if pod is None:
            continue
        kinds = {k for v in pod.get("volumes", []) for k in v if k != "name"}
        assert kinds <= allowed, f"{obj['metadata']['name']} mounts {kinds - allowed}"
        for _, c in support.containers(obj):
            assert not any(p.get("hostPort") for p in c.get("ports", [])), c["name"]


def test_loadtest_writes_samples_where_locust_reads_them(rendered: Renderer) -> None:
    """The init container's Python call binds to the real ``write_samples`` signature (not run: it
    builds the model), and writes into the folder whose samples.json locust is given."""
    (job,) = support.find(rendered(support.CHART / "ci" / "ingress-locust-values.yaml"), "Job", "loadtest")
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["args"][:2] == ["python", "-c"]
    tree = ast.parse(init["args"][2])
    (call,) = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "write_samples"
    ]
    from loadtest.samples import write_samples

    def literal(node: ast.expr) -> Any:
        if isinstance(node, ast.Call):  # Path('/samples')
            return Path(ast.literal_eval(node.args[0]))
        return ast.literal_eval(node)

    bound = inspect.signature(write_samples).bind(
        *[literal(a) for a in call.args], **{k.arg: literal(k.value) for k in call.keywords if k.arg}
    )
    assert bound.arguments["model"] == "alexnet-paper" and bound.arguments["count"] == 4
    out_dir = bound.arguments["out_dir"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--samples") + 1] == f"{out_dir}/samples.json"
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts["samples"] == str(out_dir)
    assert str(bound.arguments["weights_dir"]) == mounts["weights"] == "/var/lib/edgesplit/weights"
    assert args[args.index("--priority-mix") + 1] == "1:20,5:80"
