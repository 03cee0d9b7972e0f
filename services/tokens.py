"""Generate the deployment's tokens at its first start, so that no token ships with edgesplit.

A tool run once per start of a deployment (it keeps what exists, adds what is missing):

* in Kubernetes (the chart's and ``k8s/base``'s token Job)::

      python -m services.tokens secret --name edgesplit-auth --namespace edgesplit

  creates the Secret with one random token per key of :data:`KEYS` (48 hex characters), or adds the
  keys it lacks; existing values are never changed, so a token stays the same across upgrades and
  re-applies, and the rendered manifests hold no token at all;
* in docker compose (the ``tokens`` service)::

      python -m services.tokens files /run/edgesplit

  writes one file per variable of :data:`FILES` (the names pydantic-settings reads from its secrets
  folder ``/run/edgesplit`` (``services.common.serve``), each role's token in the file of the variable
  that role reads, and ``redis.conf`` with Redis's ``requirepass``.

The tokens are one per caller: ``orchestrator-token`` (orchestrator -> executors),
``allocator-token`` (allocator -> executors), ``cloud-token`` (orchestrator -> cloud), plus the
allocator's ``admin-token``, the public ``api-token`` and Redis's ``redis-password``.
"""

from __future__ import annotations

import argparse
import base64
import secrets
import sys
from pathlib import Path

KEYS = ("orchestrator-token", "allocator-token", "cloud-token", "admin-token", "api-token", "redis-password")
# compose: variable -> key whose value it holds (the same names as the chart's secretKeyRefs)
FILES = {
    "EDGESPLIT_EXECUTOR_TOKEN": "orchestrator-token",
    "EDGESPLIT_EXECUTOR_ALLOCATOR_TOKEN": "allocator-token",
    "EDGESPLIT_CLOUD_TOKEN": "cloud-token",
    "EDGESPLIT_ORCHESTRATOR_TOKEN": "orchestrator-token",
    "EDGESPLIT_ORCHESTRATOR_CLOUD_TOKEN": "cloud-token",
    "EDGESPLIT_ORCHESTRATOR_API_TOKEN": "api-token",
    "EDGESPLIT_ALLOCATOR_TOKEN": "allocator-token",
    "EDGESPLIT_ALLOCATOR_ADMIN_TOKEN": "admin-token",
    "EDGESPLIT_ORCHESTRATOR_REDIS_PASSWORD": "redis-password",
    "EDGESPLIT_ALLOCATOR_REDIS_PASSWORD": "redis-password",
}
REDIS_CONF = "redis.conf"  # compose's redis-server reads its password (requirepass) from this file


def new_token() -> str:
    return secrets.token_hex(24)


def ensure_files(folder: Path) -> list[str]:
    """Write the compose token files that do not exist yet; the variables written."""
    folder.mkdir(parents=True, exist_ok=True)
    values: dict[str, str] = {}
    for var, key in FILES.items():  # a key already on disk under one variable is reused for the others
        path = folder / var
        if path.exists():
            values.setdefault(key, path.read_text().strip())
    written = []
    for var, key in FILES.items():
        path = folder / var
        if not path.exists():
            _write(path, values.setdefault(key, new_token()))
            written.append(var)
    conf = folder / REDIS_CONF
    if not conf.exists():
        _write(conf, f"requirepass {values['redis-password']}\n")
        written.append(REDIS_CONF)
    return written


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o444)  # read by the services' non-root users in other containers


def ensure_secret(name: str, namespace: str) -> list[str]:
    """Create the Secret, or add the keys it lacks; the keys written (in-cluster service account)."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    config.load_incluster_config()
    api = client.CoreV1Api()
    try:
        data = api.read_namespaced_secret(name, namespace).data or {}
    except ApiException as e:
        if e.status != 404:
            raise
        fresh: dict[str, bytes | str] = {k: base64.b64encode(new_token().encode()).decode() for k in KEYS}
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=name, labels={
            "app.kubernetes.io/name": "edgesplit", "app.kubernetes.io/component": "auth"}),
            type="Opaque", data=fresh)
        api.create_namespaced_secret(namespace, body)
        return list(KEYS)
    missing = {k: base64.b64encode(new_token().encode()).decode() for k in KEYS if k not in data}
    if missing:
        api.patch_namespaced_secret(name, namespace, {"data": missing})
    return list(missing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tokens", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sec = sub.add_parser("secret", help="create or complete a Kubernetes Secret of tokens")
    sec.add_argument("--name", required=True)
    sec.add_argument("--namespace", required=True)
    files = sub.add_parser("files", help="write compose token files into a folder")
    files.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    written = ensure_secret(args.name, args.namespace) if args.cmd == "secret" else ensure_files(args.folder)
    print(f"tokens: {len(written)} generated ({', '.join(written) or 'none missing'})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
