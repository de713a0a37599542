"""Text fit to show: secrets masked, an error's first line, a URL without its password.

The lowest layer (it imports nothing of ours), so every module shows these the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

MASK = "***"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in it masked (ones shorter than 4 characters would mask noise)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text


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
