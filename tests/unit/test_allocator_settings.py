"""The allocator's settings: defaults, env prefix, unsafe values refused at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.allocator.settings import AllocatorSettings

CLUSTER = "executors:\n  - {name: a, url: 'http://127.0.0.1:1', threads: 2}\nmodels: [digits-cnn]\n"


@pytest.fixture
def cluster_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    return path


def test_defaults_and_env(cluster_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESPLIT_ALLOCATOR_CLUSTER_FILE", str(cluster_file))
    monkeypatch.setenv("EDGESPLIT_ALLOCATOR_PERIOD_S", "0.5")
    s = AllocatorSettings()
    assert (s.policy, s.margin, s.period_s, s.prefix) == ("td3", 0.05, 0.5, "es:")
    assert s.measure_interval_s == 0.5  # defaults to min(1 s, period)
    assert s.executor_selector == "app.kubernetes.io/component=executor"
    assert not s.kubernetes


@pytest.mark.parametrize("bad", [
    {},  # no cluster file outside Kubernetes
    {"cluster_file": "/nonexistent.yaml"},
    {"policy": "random"},
    {"margin": -0.1},
    {"period_s": 0},
    {"period_s": 1, "measure_s": 2},
    {"admin_token": "short"},
    {"token": "same-token-0123456789", "admin_token": "same-token-0123456789"},
    {"kubernetes": True, "executor_selector": "not a selector!"},
])
def test_unsafe_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        AllocatorSettings(**bad)  # type: ignore[arg-type]


def test_kubernetes_mode_needs_no_cluster_file() -> None:
    s = AllocatorSettings(kubernetes=True, executor_selector="app=exec, tier = edge")
    assert s.executor_selector == "app=exec,tier=edge"
