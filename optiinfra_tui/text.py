"""Text fit to show: secrets masked, an error's first line, a URL without its password.

The lowest layer (it imports nothing of ours), so every module shows these the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from urllib.parse import urlsplit

MASK = "***"
SHORTEST = 4  # shorter "secrets" would mask noise
# Past this many, one pass over the text beats a replace per secret (a key per customer: a
# log line against 10,000 keys was 10,000 replaces, a quarter of a busy slot's CPU).
FEW = 16


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in it masked."""
    if not isinstance(secrets, tuple):
        secrets = tuple(secrets)
    if len(secrets) > FEW:
        return _masker(secrets)(text)
    for secret in secrets:
        if secret and len(secret) >= SHORTEST:
            text = text.replace(secret, MASK)
    return text


@lru_cache(maxsize=8)
def _masker(secrets: tuple[str, ...]) -> Callable[[str], str]:
    """One pass over a text: at each place, the longest secret starting there, found by its
    first characters, is masked and skipped."""
    by_start: dict[str, list[str]] = {}
    for secret in sorted({s for s in secrets if s and len(s) >= SHORTEST}, key=len, reverse=True):
        by_start.setdefault(secret[:SHORTEST], []).append(secret)

    def mask(text: str) -> str:
        out, done, i, end = [], 0, 0, len(text) - SHORTEST + 1
        while i < end:
            found = by_start.get(text[i:i + SHORTEST])
            secret = found and next((s for s in found if text.startswith(s, i)), None)
            if secret:
                out += (text[done:i], MASK)
                i = done = i + len(secret)
            else:
                i += 1
        return "".join(out) + text[done:] if out else text

    return mask


def first_line(text: object, limit: int = 300) -> str:
    """The first non-blank line of `text` (an exception's message, say), cut to `limit`."""
    return (str(text).strip().splitlines() or [""])[0][:limit]


def short_error(exc: BaseException, limit: int = 200, secrets: Iterable[str] = ()) -> str:
    """'Type: first line of the message', scrubbed and cut to `limit`: one line on a screen."""
    text = first_line(scrub(str(exc), secrets), limit)
    return f"{type(exc).__name__}: {text}"[:limit] if text else type(exc).__name__


def safe_url(url: str) -> str:
    """`scheme://host:port/path`: no user, password, query or fragment (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # a port that isn't a number: say so rather than fail a message
        port = "?"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"
