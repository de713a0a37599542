"""Reachability and latency of each backend and provider."""

from __future__ import annotations

import time
from dataclasses import dataclass

from optiinfra_tui.errors import OptiInfraError
from optiinfra_tui.logs import scrub
from optiinfra_tui.queue import queue_ping
from optiinfra_tui.storage import history
from optiinfra_tui.storage.history import BackendHealth, utcnow


@dataclass
class Health:
    name: str  # queue | history | metrics | vultr:<customer>
    ok: bool
    latency_ms: float | None
    message: str = ""


def backend_labels(rt) -> dict[str, str]:
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
        first = (str(exc).strip().splitlines() or [""])[0]
        return Health(name, False, None, scrub(f"{type(exc).__name__}: {first}"[:300], secrets))
    return Health(name, True, round((time.perf_counter() - start) * 1000, 2))


def check_all(rt, providers: bool = False, metrics: bool = True) -> list[Health]:
    """Check queue, history and (when asked) metrics and each customer's provider API."""
    secrets = rt.settings.secrets()
    results = [
        _timed("queue", lambda: queue_ping(rt.huey), secrets),
        _timed("history", lambda: (rt.history(), history.ping()), secrets),
    ]
    if metrics:
        results.append(_timed("metrics", lambda: rt.metrics().ping(), secrets))
    if providers:
        from optiinfra_tui.collectors import get_collector

        for customer in rt.settings.customers:
            for provider in customer.credential_vars:
                def ping(customer=customer, provider=provider):
                    collector = get_collector(provider, rt.settings, customer.id)
                    try:
                        collector.ping()
                    finally:
                        collector.close()
                results.append(_timed(f"{provider}:{customer.id}", ping, secrets))
    return results


def record(results: list[Health]) -> None:
    """Store the latest result per name, for readers in other processes."""
    now = utcnow()
    for r in results:
        (BackendHealth.insert(name=r.name, ok=r.ok, latency_ms=r.latency_ms, message=r.message,
                              checked_at=now)
         .on_conflict(conflict_target=[BackendHealth.name],
                      update={BackendHealth.ok: r.ok, BackendHealth.latency_ms: r.latency_ms,
                              BackendHealth.message: r.message, BackendHealth.checked_at: now})
         .execute())


def recorded() -> list[tuple[Health, object]]:
    """The last recorded result of every check, with when it was taken."""
    return [(Health(h.name, h.ok, h.latency_ms, h.message), h.checked_at)
            for h in BackendHealth.select().order_by(BackendHealth.name)]
