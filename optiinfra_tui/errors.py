"""The error kinds that decide what happens to a collection run.

TransientError is retried with back-off; every other kind fails the run at once,
because retrying a missing key or a bad body only delays the message.
"""

from __future__ import annotations

import random


class OptiInfraError(Exception):
    """Base of every error the product reports to a user: the message says what to fix."""

    kind = "error"


class ConfigError(OptiInfraError):
    """Configuration is missing or invalid (a missing API key, a bad variable)."""

    kind = "config"


class StoreInUse(ConfigError):
    """The embedded metrics store's data path is held by another process."""

    def __init__(self, message: str, path: str, holder: str) -> None:
        super().__init__(message)
        self.path, self.holder = path, holder


class AuthError(OptiInfraError):
    """The provider refused the credential (401/403)."""

    kind = "auth"


class DataError(OptiInfraError):
    """A response that doesn't parse or lacks required fields."""

    kind = "data"


class TransientError(OptiInfraError):
    """A failure worth retrying later (429, 5xx, network, a backend down)."""

    kind = "transient"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendUnavailable(OptiInfraError):
    """The queue, history or metrics backend can't be reached right now."""

    kind = "backend"


# The kinds a collection retries (with `backoff`, up to MAX_RETRIES); every other fails at once.
RETRYABLE: tuple[type[OptiInfraError], ...] = (TransientError,)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential back-off with jitter: `base * 2**attempt` capped at `cap`, then a random
    point in its upper half, so clients that failed together don't retry together."""
    delay = min(base * 2 ** attempt, cap)
    return delay / 2 + random.random() * delay / 2


def error_kind(exc: BaseException) -> str:
    """The kind stored on a run for any exception; unknown ones are 'internal'."""
    return exc.kind if isinstance(exc, OptiInfraError) else "internal"

