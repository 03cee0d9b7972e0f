"""Closed by default (issue 15): weak or published tokens stop a service, one token per caller, and an
orchestrator listening beyond loopback needs an API token."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.common.settings import KNOWN_TOKENS, check_token
from services.executor.settings import ExecutorSettings
from services.orchestrator.settings import OrchestratorSettings

GOOD = "a3f9c1d27be84e6f90a1b2c3d4e5f607"


@pytest.mark.parametrize(("token", "why"), [
    ("short-token", "at least 16 characters"),
    ("a" * 40, "8 different"),
    ("01010101010101010101", "8 different"),
    ("changeme-changeme-123", "placeholder"),
    ("my-example-token-1234567", "placeholder"),
    *[(t, "published") for t in sorted(KNOWN_TOKENS)],
    ("with space in the token 1234", "printable ASCII"),
])
def test_weak_and_published_tokens_are_refused(token: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_token(token)


def test_a_generated_token_is_accepted() -> None:
    assert check_token(GOOD) == GOOD


def test_the_executor_wants_a_different_token_per_caller() -> None:
    with pytest.raises(ValidationError, match="one token per caller"):
        ExecutorSettings(models=["digits-cnn"], token=GOOD, allocator_token=GOOD)
    assert ExecutorSettings(models=["digits-cnn"], token=GOOD, allocator_token=GOOD[::-1]).allocator_token


def test_an_open_api_beyond_loopback_must_be_asked_for() -> None:
    with pytest.raises(ValidationError, match=r"api_token is required to listen on 0\.0\.0\.0"):
        OrchestratorSettings(models=["digits-cnn"], host="0.0.0.0")
    assert OrchestratorSettings(models=["digits-cnn"], host="0.0.0.0", open_api=True).api_token is None
    assert OrchestratorSettings(models=["digits-cnn"], host="0.0.0.0", api_token=GOOD).api_token == GOOD
    assert OrchestratorSettings(models=["digits-cnn"]).api_token is None  # loopback: development


@pytest.mark.parametrize("prefix", ["*", "es:*", "a?", "[ab]", "x\\y", "", "a b", "é:"])
def test_a_redis_prefix_with_a_glob_character_is_refused(prefix: str) -> None:
    """Keys are found with ``SCAN MATCH <prefix>*`` (purge, a stack's clean-up): ``*`` as a prefix
    would reach every other deployment's keys in the same Redis."""
    from services.allocator.settings import AllocatorSettings
    from tooling.stack import delete_keys

    with pytest.raises(ValidationError, match="prefix"):
        OrchestratorSettings(models=["digits-cnn"], prefix=prefix)
    with pytest.raises(ValidationError, match="prefix"):
        AllocatorSettings(prefix=prefix)
    with pytest.raises(ValueError, match="refusing to delete Redis keys"):
        delete_keys("redis://127.0.0.1:1/0", prefix)
    assert OrchestratorSettings(models=["digits-cnn"], prefix="es-1f2e:").prefix == "es-1f2e:"
