"""Prometheus metrics for `--headless --metrics-port`, exposed through prometheus_client.

Counters and the duration histogram count what this process ran (Prometheus sums across
consumers); gauges read the shared stores at each scrape, so any one consumer shows the whole
queue. prometheus_client is imported only by `serve`: other processes record nothing.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from optiinfra_tui.access import Tokens, bearer

if TYPE_CHECKING:  # runtime imports this module's callers: annotations only
    from optiinfra_tui.worker.runtime import Runtime
from collections.abc import Callable, Iterator
from datetime import UTC

from peewee import fn

log = logging.getLogger("optiinfra.telemetry")

BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))

# Set by `serve`: where `record_run` counts, or None when this process serves no metrics.
_record: Callable[[str, str, float], None] | None = None


def record_run(provider: str, status: str, seconds: float) -> None:
    """Count one finished attempt of this process (a no-op unless metrics are served)."""
    if _record is not None:
        _record(provider, status, seconds)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optiinfra-tui")
    except PackageNotFoundError:
        return "unknown"


class _StoreCollector:
    """Gauges read from the queue and the history at each scrape; a store that is down is
    reported by `optiinfra_backend_up`, its gauges left out."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator:
        from prometheus_client.core import GaugeMetricFamily

        from optiinfra_tui.storage.history import SUCCESS, CollectionRun
        from optiinfra_tui.worker import monitor

        up = GaugeMetricFamily("optiinfra_backend_up", "Whether a backend answered this scrape.",
                               labels=["backend"])
        try:
            depth = self.rt.huey.pending_count()
        except Exception:
            up.add_metric(["queue"], 0)
        else:
            yield GaugeMetricFamily("optiinfra_queue_depth", "Tasks waiting in the queue.",
                                    value=depth)
            up.add_metric(["queue"], 1)
        try:
            self.rt.history()
            workers = monitor.workers()
            rows = list(CollectionRun.select(CollectionRun.provider, CollectionRun.customer_id,
                                             fn.MAX(CollectionRun.finished_at))
                        .where(CollectionRun.status == SUCCESS)
                        .group_by(CollectionRun.provider, CollectionRun.customer_id).tuples())
        except Exception:
            up.add_metric(["history"], 0)
        else:
            busy = GaugeMetricFamily("optiinfra_workers", "Worker threads of live consumers, "
                                     "by state.", labels=["state"])
            for state in ("busy", "idle"):
                busy.add_metric([state], sum(1 for w in workers if w.state == state))
            yield busy
            last = GaugeMetricFamily("optiinfra_last_success_timestamp_seconds",
                                     "Last successful run's end.", labels=["provider", "customer"])
            for provider, customer, finished in rows:
                # Stored naive UTC: convert as UTC, not local time.
                last.add_metric([provider, customer], finished.replace(tzinfo=UTC).timestamp())
            yield last
            up.add_metric(["history"], 1)
        yield up


def registry(rt: Runtime):
    """A registry with this process's run counters, the store gauges, build info and the
    client's process, platform and GC metrics; `record_run` counts into it from now on."""
    global _record
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        GCCollector,
        Histogram,
        Info,
        PlatformCollector,
        ProcessCollector,
        disable_created_metrics,
    )

    # `_created` series would double every counter and histogram for a start time nobody reads.
    disable_created_metrics()
    reg = CollectorRegistry()
    runs = Counter("optiinfra_runs", "Collection attempts finished by this process.",
                   ["provider", "status"], registry=reg)
    duration = Histogram("optiinfra_run_duration_seconds", "Duration of collection attempts.",
                         ["provider"], buckets=BUCKETS, registry=reg)
    Info("optiinfra_build", "The running optiinfra-tui.", registry=reg).info(
        {"version": _version()})
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    reg.register(_StoreCollector(rt))

    def record(provider: str, status: str, seconds: float) -> None:
        runs.labels(provider, status).inc()
        duration.labels(provider).observe(seconds)

    _record = record
    return reg


def serve(rt: Runtime, port: int, host: str = "127.0.0.1", tokens: Tokens | None = None):
    """Serve /metrics on a background thread; returns the server (call shutdown() to stop).

    With `tokens` (a listener beyond loopback), a scrape must send `Authorization: Bearer`
    with one of them (Prometheus: `authorization: {credentials: ...}` in the scrape config).
    """
    import threading
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    class Quiet(WSGIRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass  # a line per scrape would drown the log

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    app = make_wsgi_app(registry(rt))
    if tokens is not None:
        app = _guarded(app, tokens)
    server = make_server(host.strip("[]"), port, app, Server, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("Prometheus metrics on http://%s:%d/metrics%s", host, port,
             " (bearer token required)" if tokens is not None else "")
    return server


def _guarded(app: Callable, tokens: Tokens) -> Callable:
    """A WSGI app that answers 401 unless the request carries one of `tokens`."""

    def guarded(environ, start_response):
        if tokens.match(bearer(environ.get("HTTP_AUTHORIZATION"))) is None:
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", "Bearer")])
            return [b"Send Authorization: Bearer <token> (OPTIINFRA_API_TOKEN).\n"]
        return app(environ, start_response)

    return guarded
