"""Domain exceptions of edgesplit.

The core raises these; each service maps them once to an HTTP status (the ``status`` attribute) in its
exception handlers. Messages say what was wrong and what was expected.
"""

from __future__ import annotations

from pathlib import Path


class EdgesplitError(Exception):
    """Base class. ``status`` is the HTTP status a service answers with."""

    status: int = 500


class InvalidInput(EdgesplitError):
    """A request or tensor does not match what was expected (HTTP 400/422)."""

    status = 422


class InvalidSpec(EdgesplitError):
    """A model spec is malformed or inconsistent (HTTP 422)."""

    status = 422


class ModelNotFound(EdgesplitError):
    """No deployed or built-in model has that name (HTTP 404)."""

    status = 404


class InvalidPlan(EdgesplitError):
    """A split or plan request is impossible, e.g. 0 servers (HTTP 422)."""

    status = 422


class QueueFull(EdgesplitError):
    """The model's queue is at its maximum length (HTTP 429 + Retry-After)."""

    status = 429

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TaskNotFound(EdgesplitError):
    """No task has that id, or its result expired (HTTP 404)."""

    status = 404


class TaskExpired(EdgesplitError):
    """A task's timeout ran out before it finished (HTTP 504 on synchronous calls)."""

    status = 504


class Conflict(EdgesplitError):
    """The request conflicts with the current state, e.g. a reused idempotency key (HTTP 409)."""

    status = 409


class CapacityExceeded(EdgesplitError):
    """Quotas above an executor's thread capacity (HTTP 409)."""

    status = 409


class Unavailable(EdgesplitError):
    """A dependency (Redis, executors) does not answer (HTTP 503)."""

    status = 503


class Unreachable(Unavailable):
    """A service refused the connection: nothing listens there (HTTP 503)."""


class Overloaded(Unavailable):
    """A bounded queue is full; try again after ``retry_after_s`` seconds (HTTP 503 + Retry-After)."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unauthorized(EdgesplitError):
    """A missing or wrong bearer token (HTTP 401)."""

    status = 401


class BodyTooLarge(InvalidInput):
    """A request body above the service's ``max_body_bytes`` (HTTP 413)."""

    status = 413


class UnsupportedMediaType(InvalidInput):
    """A request body of a content type the endpoint does not read (HTTP 415)."""

    status = 415


FILE_MAX_BYTES = 1 << 20  # a cluster file, testbed description or model spec is a few KB


def read_user_text(path: Path, what: str, expected: str, error: type[EdgesplitError] = InvalidInput,
                   limit: int = FILE_MAX_BYTES) -> str:
    """The text of a file a user named (``what``, e.g. "cluster file"), or ``error`` with one line naming
    it: missing, not readable (a folder, no permission), not UTF-8 (``expected``: what it should hold,
    e.g. "YAML"), or above ``limit`` bytes (``/dev/zero`` is refused, not read for ever)."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError as e:
        raise error(f"{what} {path} does not exist") from e
    except OSError as e:
        raise error(f"{what} {path} cannot be read: {e.strerror or type(e).__name__}") from e
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {limit} bytes: not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text (byte {e.start}): expected {expected}") from e
