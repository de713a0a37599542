"""Reachability and latency of each backend and provider, and how old each finding is.

Backends are checked by every consumer every BACKEND_EVERY seconds; provider APIs once per
PROVIDER_CHECK_INTERVAL (at least a minute) across all consumers, and a collection's outcome
counts as a check of its provider for its customer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from optiinfra_tui.errors import OptiInfraError
from optiinfra_tui.storage import history
from optiinfra_tui.storage.group_commit import Part
from optiinfra_tui.storage.history import BackendHealth, utcnow
from optiinfra_tui.text import first_line, scrub, short_error
from optiinfra_tui.worker.queue import queue_ping

if TYPE_CHECKING:  # runtime imports this module's callers: annotations only
    from optiinfra_tui.worker.runtime import Runtime

BACKENDS = ("queue", "history", "metrics")
BACKEND_EVERY = 15.0
# Providers' period when their timed checks are off: collections and `h` still check them.
PROVIDER_EVERY = 60.0
# Recorded checks older than this are not shown at all (a customer long gone, say).
FORGET_AFTER = timedelta(days=1)
NO_CREDENTIALS = "no credentials"


@dataclass
class Health:
    name: str  # queue | history | metrics | <provider>:<customer>
    ok: bool
    latency_ms: float | None
    message: str = ""
    checked_at: datetime | None = None  # None: checked live, just now
    every: float | None = None  # seconds between two checks of this kind

    def late(self, now: datetime) -> str:
        """'3m ago' once the check is older than its period (plus half of it for the timers'
        jitter), else ''."""
        if self.checked_at is None or self.every is None:
            return ""
        seconds = (now - self.checked_at).total_seconds()
        return f"{_coarse(seconds)} ago" if seconds > self.every * 1.5 else ""


def _coarse(seconds: float) -> str:
    # One unit only, so that a label changes once a minute, not every second.
    s = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def check_name(provider: str, customer_id: str) -> str:
    return f"{provider}:{customer_id}"


def period(name: str, provider_every: float = 0) -> float:
    return BACKEND_EVERY if name in BACKENDS else provider_every or PROVIDER_EVERY


def backend_labels(rt: Runtime) -> dict[str, str]:
    """What each backend is in this mode, for headers and `status`."""
    s = rt.settings
    return {
        "queue": "redis" if s.redis_url else "sqlite queue",
        "history": "postgresql" if s.database_url.startswith("postgres") else "sqlite",
        "metrics": "chdb" if s.clickhouse_url.startswith("chdb") else "clickhouse",
    }


def _timed(name: str, fn, secrets: list[str]) -> Health:
    start = time.perf_counter()
    try:
        fn()
    except OptiInfraError as exc:
        return Health(name, False, None, scrub(str(exc), secrets))
    except Exception as exc:
        return Health(name, False, None, short_error(exc, 300, secrets))
    return Health(name, True, round((time.perf_counter() - start) * 1000, 2))


def check_all(rt: Runtime, providers: bool = False, metrics: bool = True, backends: bool = True,
              skip: frozenset[str] = frozenset()) -> list[Health]:
    """Check queue, history and (when asked) metrics and each customer's provider API.

    A customer without its credential is reported without calling the provider.
    """
    settings = rt.settings
    secrets = settings.secrets()
    results = []
    if backends:
        results += [_timed("queue", lambda: queue_ping(rt.huey), secrets),
                    _timed("history", lambda: (rt.history(), history.ping()), secrets)]
    if backends and metrics:
        results.append(_timed("metrics", lambda: rt.metrics().ping(), secrets))
    if providers:
        from optiinfra_tui.collectors import get_collector

        for customer in settings.customers:
            for provider in customer.accounts:
                name = check_name(provider, customer.id)
                if name in skip:
                    continue
                missing = settings.missing_credential(customer.id, provider)
                if missing:
                    results.append(Health(name, False, None, f"{NO_CREDENTIALS}: set {missing}"))
                    continue

                def ping(customer=customer, provider=provider):
                    collector = get_collector(provider, settings, customer.id)
                    try:
                        collector.ping()
                    finally:
                        collector.close()
                results.append(_timed(name, ping, secrets))
    return results


# A collection's check, on PostgreSQL: in the same group commit as the run's end, before it
# (whoever sees the run final sees the check); of two checks of one name in a batch, the later.
_RECORD = Part("provider_check", (("name", "text"), ("ok", "boolean"), ("message", "text"),
                                  ("checked_at", "timestamp")), """
{name} AS (
    INSERT INTO backend_health (name, ok, latency_ms, message, checked_at)
    SELECT name, ok, NULL, message, checked_at FROM {rows}
    ON CONFLICT (name) DO UPDATE SET ok = EXCLUDED.ok, latency_ms = NULL,
        message = EXCLUDED.message, checked_at = EXCLUDED.checked_at)""",
               table="backend_health", replaces=True)


def record_collection(provider: str, customer_id: str, ok: bool, message: str) -> None:
    """A collection's outcome as a check of its provider for its customer."""
    name, text = check_name(provider, customer_id), first_line(message, 200)
    writer = history.group_writer()
    if writer is None:
        record([Health(name, ok, None, text)])
        return
    writer.write(_RECORD, (name, ok, text, utcnow()), what=f"check of {name}", wait=False)


def record(results: list[Health], now: datetime | None = None) -> None:
    """Store the latest result per name, for readers in other processes."""
    now = now or utcnow()
    for r in results:
        (BackendHealth.insert(name=r.name, ok=r.ok, latency_ms=r.latency_ms, message=r.message,
                              checked_at=now)
         .on_conflict(conflict_target=[BackendHealth.name],
                      update={BackendHealth.ok: r.ok, BackendHealth.latency_ms: r.latency_ms,
                              BackendHealth.message: r.message, BackendHealth.checked_at: now})
         .execute())


def recorded(now: datetime | None = None, provider_every: float = 0) -> list[Health]:
    """The last recorded result of every check of the last day, with when it was taken."""
    since = (now or utcnow()) - FORGET_AFTER
    return [Health(h.name, h.ok, h.latency_ms, h.message, h.checked_at,
                   period(h.name, provider_every))
            for h in BackendHealth.select().where(BackendHealth.checked_at >= since)
            .order_by(BackendHealth.name)]
