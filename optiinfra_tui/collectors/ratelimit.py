"""Per-API-key request pacing shared by every thread of the process.

Providers count requests per key, not per connection, so all threads using one key share
one limiter. Keys are known here only by a hash.
"""

from __future__ import annotations

import hashlib
import threading
import time


class RateLimiter:
    """At most `rate` requests per second, enforced as a minimum spacing between them."""

    def __init__(self, rate: float, headroom: float = 0.05) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time of the next free slot
        self._headroom = headroom
        self._interval = (1.0 + headroom) / rate
        self.rate = rate

    def set_rate(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be positive")
        with self._lock:
            self.rate = rate
            self._interval = (1.0 + self._headroom) / rate

    def acquire(self) -> float:
        """Block until this caller may send one request; return the seconds waited."""
        # Reserve a slot under the lock, sleep outside it: waiting threads queue in slot order
        # without holding the lock, so a sleeper never delays a reservation.
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        wait = slot - now
        if wait > 0:
            time.sleep(wait)
        return max(wait, 0.0)

    def defer(self, seconds: float) -> None:
        """Hold every user of this key back for `seconds` (the provider said 'slow down')."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + max(seconds, 0.0))

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self.rate:g})"


_registry: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def key_id(api_key: str) -> str:
    """A stable, non-reversible name for an API key (the key itself is never stored here)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


def limiter_for(api_key: str, rate: float) -> RateLimiter:
    """The process-wide limiter for this key; a changed `rate` applies to the shared one."""
    kid = key_id(api_key)
    with _registry_lock:
        limiter = _registry.get(kid)
        if limiter is None:
            limiter = _registry[kid] = RateLimiter(rate)
        elif limiter.rate != rate:
            limiter.set_rate(rate)
    return limiter
