"""Signed, expiring values: the sign-in link `serve` prints and the session cookie it sets.

The key is random per server process, so a restart ends every link and session at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable


class Signer:
    """`sign(purpose, seconds)` gives '<expiry>.<mac>'; `valid` checks one, in constant time."""

    def __init__(self, key: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self._key = key or secrets.token_bytes(32)
        self.clock = clock

    def _mac(self, purpose: str, expires: int) -> str:
        return hmac.new(self._key, f"{purpose}:{expires}".encode(), hashlib.sha256).hexdigest()

    def sign(self, purpose: str, seconds: float) -> str:
        expires = int(self.clock() + seconds)
        return f"{expires}.{self._mac(purpose, expires)}"

    def valid(self, purpose: str, value: str | None) -> bool:
        """Whether `value` was signed here for `purpose` and has not expired."""
        expires, _, mac = (value or "").partition(".")
        if not expires.isdigit() or len(expires) > 12:
            return False
        good = hmac.compare_digest(mac.encode("ascii", "replace"),
                                   self._mac(purpose, int(expires)).encode())
        return good and int(expires) > self.clock()
