"""What one caller may send: bodies of at most 64 KiB, and so many triggers a minute per token."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable

MAX_BODY = 64 * 1024
TOO_LARGE = (f"The body is larger than {MAX_BODY // 1024} KiB. A trigger's body is a few "
             "hundred bytes: send only customer_id, provider, data_types and async_mode.")


class BodyLimit:
    """ASGI middleware: a body over `limit` bytes gets 413 before the app reads any of it."""

    def __init__(self, app, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        # No (or a small) Content-Length: read it all first, counting, then hand it on.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(send)
                return
            more = message.get("more_body", False)
        body, given = b"".join(chunks), False

        async def replay():
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send) -> None:
        payload = json.dumps({"detail": TOO_LARGE}, indent=2).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


class TriggerLimit:
    """At most `per_minute` triggers in any 60 s, per token (known by its variable's name)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> float | None:
        """Count a trigger of `caller`; None when it may go, else the seconds until one may."""
        now = self.clock()
        with self._lock:
            seen = self._seen.setdefault(caller, deque())
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return max(1.0, math.ceil(seen[0] + 60 - now))
            seen.append(now)
            return None
