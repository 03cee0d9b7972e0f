"""Shared service helpers without a network: CPU limit, settings validation, error mapping, models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from edgesplit.errors import CapacityExceeded, EdgesplitError, InvalidInput, ModelNotFound, QueueFull
from edgesplit.models import get_spec
from edgesplit.models.build import build_module, save_weights
from services.cloud.settings import CloudSettings
from services.common.errors import BodyTooLarge, Unauthorized, error_from_response
from services.common.models import load_part
from services.common.settings import _cgroup_quota
from services.executor.settings import ExecutorSettings


def test_cgroup_quota_v2_v1_and_unlimited(tmp_path: Path) -> None:
    v2 = tmp_path / "cpu.max"
    v1 = tmp_path / "v1"
    v1.mkdir()
    v2.write_text("250000 100000\n")
    assert _cgroup_quota(v2, v1) == 2.5
    v2.write_text("max 100000\n")
    assert _cgroup_quota(v2, v1) is None
    v2.unlink()
    (v1 / "cpu.cfs_quota_us").write_text("150000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_quota(v2, v1) == 1.5
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_quota(v2, v1) is None


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGESPLIT_EXECUTOR_MODELS", "digits-cnn, alexnet-paper")
    monkeypatch.setenv("EDGESPLIT_EXECUTOR_MODEL_FILES", "")
    monkeypatch.setenv("EDGESPLIT_EXECUTOR_WEIGHTS_DIR", str(tmp_path))
    s = ExecutorSettings()  # type: ignore[call-arg]
    assert s.models == ["digits-cnn", "alexnet-paper"] and s.model_files == []
    assert s.threads is None and s.capacity() >= 1  # follows the CPU limit
    monkeypatch.setenv("EDGESPLIT_EXECUTOR_THREADS", "6")
    assert ExecutorSettings().capacity() == 6  # type: ignore[call-arg]
    monkeypatch.setenv("EDGESPLIT_CLOUD_TOKEN", "")
    assert CloudSettings().token is None  # type: ignore[call-arg]


@pytest.mark.parametrize(("env", "message"), [
    ({"TOKEN": "changethis"}, "at least 16 characters"),
    ({"MODELS": "resnet"}, "unknown built-in model"),
    ({"MODELS": "digits-cnn,digits-cnn"}, "deployed twice"),
    ({"WEIGHTS_DIR": "/no/such/dir"}, "is not a directory"),
    ({"MODEL_FILES": "/no/such.json"}, "does not exist"),
    ({"MAX_BODY_BYTES": "100"}, "greater than or equal to 1024"),
    ({"SLICE_DELAY_S": "-0.5"}, "greater than or equal to 0"),
])
def test_unsafe_settings_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                     message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"EDGESPLIT_EXECUTOR_{key}", value)
    with pytest.raises(ValidationError, match=message):
        ExecutorSettings()  # type: ignore[call-arg]


def test_error_answers_become_the_named_domain_errors() -> None:
    def err(status: int, payload: object, headers: dict[str, str] | None = None) -> EdgesplitError:
        return error_from_response(status, payload, headers or {}, "http://x/y")

    e = err(409, {"error": "quotas total 5", "type": "CapacityExceeded"})
    assert isinstance(e, CapacityExceeded) and str(e) == "http://x/y: HTTP 409: quotas total 5"
    assert isinstance(err(404, {"error": "no"}), ModelNotFound)
    assert isinstance(err(413, {"error": "big", "type": "BodyTooLarge"}), BodyTooLarge)
    assert isinstance(err(401, {"error": "who"}), Unauthorized)
    q = err(429, {"error": "full", "type": "QueueFull"}, {"retry-after": "3"})
    assert isinstance(q, QueueFull) and q.retry_after_s == 3.0
    assert isinstance(err(422, {"error": "bad", "type": "NotAnError"}), InvalidInput)
    odd = err(418, "teapot")
    assert type(odd) is EdgesplitError and odd.status == 418


def test_edge_and_cloud_parts_have_the_weights_of_the_whole_model(tmp_path: Path) -> None:
    spec = get_spec("digits-cnn")
    whole = build_module(spec, seed=3)
    x = torch.randn(2, *spec.input)
    with torch.no_grad():
        for weights_dir in (None, tmp_path):
            if weights_dir is not None:
                save_weights(build_module(spec, seed=3), tmp_path / "digits-cnn.safetensors")
            edge = load_part(spec, "edge", weights_dir, 3)
            cloud = load_part(spec, "cloud", weights_dir, 3)
            assert len(edge.module) == spec.n_edge
            torch.testing.assert_close(cloud.module(edge.module(x)), whole(x))
        assert edge.weights.endswith("digits-cnn.safetensors")


def test_services_and_testbed_refuse_an_unknown_model_with_one_message() -> None:
    """One check of model names (``edgesplit.models.builtin_names``) for the services' settings and the
    testbed's description."""
    from tooling.testbed.description import parse_description, uniform

    with pytest.raises(ValidationError) as service:
        ExecutorSettings(models=["alexnet-paper", "resnet"])
    raw = uniform(1).model_dump()
    with pytest.raises(InvalidInput) as testbed:
        parse_description({**raw, "models": ["alexnet-paper", "resnet"]})
    expected = "unknown built-in model ['resnet']; built-ins are alexnet-paper, vgg16-paper"
    assert expected in str(service.value) and expected in str(testbed.value)
