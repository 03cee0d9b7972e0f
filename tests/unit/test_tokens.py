"""Token generation at a deployment's first start (services.tokens): in a Kubernetes Secret, and as
compose files. A Secret is created with every key, or completed with only the keys it lacks; a token
never changes once written."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from services import tokens
from services.common.settings import check_token


class FakeCore:
    """The two calls of CoreV1Api that ensure_secret makes, on one in-memory Secret."""

    def __init__(self, data: dict[str, str] | None) -> None:
        self.data = data
        self.calls: list[str] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.calls.append("read")
        if self.data is None:
            raise ApiException(status=404)
        return client.V1Secret(data=dict(self.data))

    def create_namespaced_secret(self, namespace: str, body: client.V1Secret) -> None:
        self.calls.append("create")
        self.data = dict(body.data)

    def patch_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append("patch")
        assert self.data is not None
        self.data.update(body["data"])


@pytest.fixture
def core(monkeypatch: pytest.MonkeyPatch) -> FakeCore:
    fake = FakeCore(None)
    monkeypatch.setattr(config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(client, "CoreV1Api", lambda: fake)
    return fake


def _decoded(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_secret_is_created_with_one_strong_token_per_key(core: FakeCore) -> None:
    assert set(tokens.ensure_secret("edgesplit-auth", "ns")) == set(tokens.KEYS)
    assert core.calls == ["read", "create"] and core.data is not None
    values = _decoded(core.data)
    assert set(values) == set(tokens.KEYS) and len(set(values.values())) == len(tokens.KEYS)
    for value in values.values():
        assert check_token(value) == value  # the services accept every generated token


def test_an_existing_secret_is_completed_never_changed(core: FakeCore) -> None:
    core.data = {"api-token": base64.b64encode(b"kept-api-token-0123456789abcdef").decode()}
    written = tokens.ensure_secret("edgesplit-auth", "ns")
    assert set(written) == set(tokens.KEYS) - {"api-token"}
    assert core.data is not None and _decoded(core.data)["api-token"] == "kept-api-token-0123456789abcdef"
    before = dict(core.data)
    assert tokens.ensure_secret("edgesplit-auth", "ns") == [] and core.data == before  # nothing to add
    assert core.calls[-1] == "read"


def test_compose_files_are_written_once(tmp_path: Path) -> None:
    assert set(tokens.ensure_files(tmp_path)) == {*tokens.FILES, tokens.REDIS_CONF}
    first = {p.name: p.read_text() for p in tmp_path.iterdir()}
    (tmp_path / "EDGESPLIT_CLOUD_TOKEN").chmod(0o644)
    (tmp_path / "EDGESPLIT_CLOUD_TOKEN").unlink()  # a lost file comes back with its key's value
    assert tokens.ensure_files(tmp_path) == ["EDGESPLIT_CLOUD_TOKEN"]
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == first
