"""Prometheus metrics for `--headless --metrics-port`: what Flower users scraped, and more.

Counters and the duration histogram count what this process ran (Prometheus sums across
consumers); gauges read the shared stores, so any one consumer shows the whole queue.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from peewee import fn

log = logging.getLogger("optiinfra.telemetry")

BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))

_lock = threading.Lock()
_runs: Counter = Counter()  # (provider, status) -> count
_hist: dict[str, list[int]] = {}  # provider -> cumulative bucket counts
_sum: Counter = Counter()


def record_run(provider: str, status: str, seconds: float) -> None:
    """Count one finished attempt of this process."""
    with _lock:
        _runs[(provider, status)] += 1
        buckets = _hist.setdefault(provider, [0] * len(BUCKETS))
        for i, le in enumerate(BUCKETS):
            if seconds <= le:
                buckets[i] += 1
        _sum[provider] += seconds


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(rt) -> str:
    """The Prometheus text exposition of every metric."""
    from optiinfra_tui import monitor
    from optiinfra_tui.storage.history import SUCCESS, CollectionRun

    out = ["# HELP optiinfra_runs_total Collection attempts finished by this process.",
           "# TYPE optiinfra_runs_total counter"]
    with _lock:
        for (provider, status), n in sorted(_runs.items()):
            out.append(f'optiinfra_runs_total{{provider="{_label(provider)}",status="{status}"}} {n}')
        out += ["# HELP optiinfra_run_duration_seconds Duration of collection attempts.",
                "# TYPE optiinfra_run_duration_seconds histogram"]
        for provider, buckets in sorted(_hist.items()):
            p = _label(provider)
            for le, n in zip(BUCKETS, buckets, strict=True):
                le_s = "+Inf" if le == float("inf") else f"{le:g}"
                out.append(f'optiinfra_run_duration_seconds_bucket{{provider="{p}",le="{le_s}"}} {n}')
            out.append(f'optiinfra_run_duration_seconds_count{{provider="{p}"}} {buckets[-1]}')
            out.append(f'optiinfra_run_duration_seconds_sum{{provider="{p}"}} {_sum[provider]:.3f}')

    up = {"queue": 0, "history": 0}
    try:
        out += ["# HELP optiinfra_queue_depth Tasks waiting in the queue.",
                "# TYPE optiinfra_queue_depth gauge",
                f"optiinfra_queue_depth {rt.huey.pending_count()}"]
        up["queue"] = 1
    except Exception:
        pass
    try:
        rt.history()
        workers = monitor.workers()
        out += ["# HELP optiinfra_workers Worker threads of live consumers, by state.",
                "# TYPE optiinfra_workers gauge"]
        for state in ("busy", "idle"):
            out.append(f'optiinfra_workers{{state="{state}"}} '
                       f"{sum(1 for w in workers if w.state == state)}")
        out += ["# HELP optiinfra_last_success_timestamp_seconds Last successful run's end.",
                "# TYPE optiinfra_last_success_timestamp_seconds gauge"]
        rows = (CollectionRun.select(CollectionRun.provider, CollectionRun.customer_id,
                                     fn.MAX(CollectionRun.finished_at))
                .where(CollectionRun.status == SUCCESS)
                .group_by(CollectionRun.provider, CollectionRun.customer_id).tuples())
        for provider, customer, finished in rows:
            # Stored naive UTC: convert as UTC, not local time.
            ts = finished.replace(tzinfo=UTC).timestamp()
            out.append(f'optiinfra_last_success_timestamp_seconds{{provider="{_label(provider)}",'
                       f'customer="{_label(customer)}"}} {ts:.0f}')
        up["history"] = 1
    except Exception:
        pass
    out += ["# HELP optiinfra_backend_up Whether a backend answered this scrape.",
            "# TYPE optiinfra_backend_up gauge"]
    out += [f'optiinfra_backend_up{{backend="{name}"}} {v}' for name, v in up.items()]
    return "\n".join(out) + "\n"


def serve(rt, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve /metrics on a background thread; returns the server (call shutdown() to stop)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404)
                return
            body = render(rt).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="Metrics", daemon=True).start()
    log.info("Prometheus metrics on http://%s:%d/metrics", host, port)
    return server
