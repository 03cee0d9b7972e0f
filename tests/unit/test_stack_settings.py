"""``LocalStack`` is configured by one ``StackSettings`` object grouped by role; each group's extra
settings are checked against that service's settings class, and reach its ``EDGESPLIT_<ROLE>_*``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tooling.stack import (
    AllocatorGroup,
    CloudGroup,
    ExecutorGroup,
    LocalStack,
    OrchestratorGroup,
    RedisGroup,
    StackSettings,
)


@pytest.mark.parametrize("group", [lambda: ExecutorGroup(extra={"slice_dealy_s": 1.0}),
                                   lambda: CloudGroup(extra={"thread": 1}),
                                   lambda: OrchestratorGroup(extra={"agign_s": 0.5}),
                                   lambda: AllocatorGroup(extra={"period": 1.0})])
def test_a_misspelt_extra_setting_is_refused(group) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="not settings of the"):
        group()


def test_no_executor_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 executor"):
        ExecutorGroup(count=0)


def test_each_group_reaches_its_role(tmp_path: Path) -> None:
    settings = StackSettings(
        models=("digits-cnn",), split="paper", log_dir=tmp_path,
        executor=ExecutorGroup(count=3, threads=4, extra={"slice_delay_s": 0.5}),
        cloud=CloudGroup(threads=3, extra={"max_body_bytes": 1 << 20}),
        orchestrator=OrchestratorGroup(mode="dads", pipeline="lockstep", port=18080, extra={"aging_s": 0.5}),
        allocator=AllocatorGroup(enabled=True, extra={"period_s": 2.0}),
        redis=RedisGroup(url="redis://127.0.0.1:1/0", prefix="p:"))
    stack = LocalStack(settings)
    ex, cloud = stack.role_env("executor", 2), stack.role_env("cloud")
    orch, alloc = stack.role_env("orchestrator"), stack.role_env("allocator")
    assert len(stack.exec_ports) == 3 and ex["EDGESPLIT_EXECUTOR_PORT"] == str(stack.exec_ports[2])
    assert ex["EDGESPLIT_EXECUTOR_THREADS"] == "4" and ex["EDGESPLIT_EXECUTOR_SLICE_DELAY_S"] == "0.5"
    assert cloud["EDGESPLIT_CLOUD_THREADS"] == "3" and cloud["EDGESPLIT_CLOUD_MAX_BODY_BYTES"] == str(1 << 20)
    assert orch["EDGESPLIT_ORCHESTRATOR_MODE"] == "dads"
    assert orch["EDGESPLIT_ORCHESTRATOR_PIPELINE"] == "lockstep"
    assert orch["EDGESPLIT_ORCHESTRATOR_PORT"] == "18080" and orch["EDGESPLIT_ORCHESTRATOR_AGING_S"] == "0.5"
    assert orch["EDGESPLIT_ORCHESTRATOR_PREFIX"] == alloc["EDGESPLIT_ALLOCATOR_PREFIX"] == "p:"
    assert orch["EDGESPLIT_ORCHESTRATOR_SPLIT"] == alloc["EDGESPLIT_ALLOCATOR_SPLIT"] == "paper"
    assert alloc["EDGESPLIT_ALLOCATOR_PERIOD_S"] == "2.0"
    # one token per caller: the orchestrator's reaches the executors, the cloud has its own
    assert orch["EDGESPLIT_ORCHESTRATOR_TOKEN"] == ex["EDGESPLIT_EXECUTOR_TOKEN"] == settings.tokens.internal
    tokens = settings.tokens
    assert cloud["EDGESPLIT_CLOUD_TOKEN"] == orch["EDGESPLIT_ORCHESTRATOR_CLOUD_TOKEN"] == tokens.cloud
    assert settings.tokens.cloud != settings.tokens.internal
    with pytest.raises(ValueError, match="executors 0 to 2"):
        stack.role_env("executor", 3)


def test_two_default_settings_have_different_tokens() -> None:
    a, b = StackSettings(), StackSettings()
    assert a.tokens.internal != b.tokens.internal and a.tokens.cloud != a.tokens.internal


def test_the_launchers_find_the_checkout_and_the_shipped_weights() -> None:
    """``edgesplit up`` and ``demo`` serve the shipped trained weights; spawned services run from the
    checkout (both paths are computed from where the tooling modules sit)."""
    from tooling.commands.stack import SHIPPED_WEIGHTS
    from tooling.proc import REPO

    assert (SHIPPED_WEIGHTS / "digits-cnn.safetensors").is_file()
    assert (REPO / "pyproject.toml").is_file() and (REPO / "tooling" / "proc.py").is_file()
