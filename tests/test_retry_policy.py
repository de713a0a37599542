"""The back-off between retries: exponential, jittered, capped, honouring Retry-After."""

import random

from optiinfra_tui.errors import AuthError, ConfigError, DataError, TransientError, error_kind
from optiinfra_tui.worker.collection import MAX_RETRY_DELAY, retry_delay


def test_backoff_grows_exponentially_with_jitter():
    random.seed(7)
    for attempt in range(1, 6):
        base = 10 * 2 ** (attempt - 1)
        samples = [retry_delay(attempt, 10) for _ in range(200)]
        assert all(base / 2 <= s <= base for s in samples)
        assert len({round(s, 6) for s in samples}) > 100  # jittered, not constant


def test_backoff_is_capped_and_honours_retry_after():
    assert retry_delay(40, 60) <= MAX_RETRY_DELAY
    assert retry_delay(1, 1, retry_after=30) == 30
    assert retry_delay(1, 100, retry_after=0.5) >= 50
    assert retry_delay(1, 1, retry_after=10 ** 9) == MAX_RETRY_DELAY


def test_error_kinds():
    assert [error_kind(e) for e in (TransientError("x"), ConfigError("x"), AuthError("x"),
                                    DataError("x"), KeyError("x"))] == [
        "transient", "config", "auth", "data", "internal"]
