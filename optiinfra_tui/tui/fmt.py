"""Text formatting shared by the panels: durations, ages, column fitting (colours are in
`tui.palette`; money, clipping and the rest shared with the CLI in `optiinfra_tui.formats`)."""

from __future__ import annotations

from datetime import datetime

# What to do about each kind of failure, for the run detail screen.
ERROR_ADVICE = {
    "config": "Fix the configuration the message names (often a missing API key in the "
              "environment of the process that runs the workers), restart it, then press r "
              "to retry.",
    "auth": "The provider refused the credential: check that the API key is current and "
            "allowed from this host (some providers limit keys to IP ranges), then retry.",
    "data": "The provider answered with something that doesn't parse. Retrying rarely "
            "helps; the log file has the details worth reporting.",
    "transient": "A temporary failure (rate limit, 5xx, network). It is retried with "
                 "back-off; if every attempt failed, press r to try again later.",
    "backend": "A backend (queue, history or metrics) was unreachable: check the header's "
               "health, then retry.",
    "canceled": "Revoked before it ran. Press r to queue it again.",
    "interrupted": "Stopped by a shutdown. Rows already written are kept; press r to finish.",
    "internal": "A bug: the traceback is in the log file. Retrying may work around it.",
}


def age(since: datetime | None, now: datetime) -> str:
    """'12s', '3m', '2h', '4d' for how long ago `since` was."""
    if since is None:
        return "-"
    s = max(0, int((now - since).total_seconds()))
    return _span(s)


def until(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "-"
    s = int((at - now).total_seconds())
    return "now" if s <= 0 else "in " + _span(s)


def _span(s: int) -> str:
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def fit_columns(columns: tuple[tuple[str, str, int], ...], available: int, flex: str,
                drop_order: tuple[str, ...], padding: int = 1) -> tuple[tuple[str, str, int], ...]:
    """The columns that fit in `available` cells, with fixed widths (DataTable adds `padding`
    each side): those in `drop_order` go whole, first to last, until the rest fit at their
    widths, and the `flex` column (given at its narrowest) takes every cell left."""
    shown = list(columns)

    def needed(cols: list) -> int:
        return sum(width + 2 * padding for _, _, width in cols)

    for key in drop_order:
        if needed(shown) <= available:
            break
        shown = [c for c in shown if c[0] != key]
    spare = max(0, available - needed(shown))
    return tuple((k, label, width + spare if k == flex else width) for k, label, width in shown)
