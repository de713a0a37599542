"""`optiinfra-tui --headless`: worker pool + scheduler, logs to stdout, graceful on signals."""

from __future__ import annotations

import logging
import signal
import threading

from optiinfra_tui import access
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.logs import setup_logging
from optiinfra_tui.settings import Settings
from optiinfra_tui.worker.health import backend_labels
from optiinfra_tui.worker.pool import WorkerPool
from optiinfra_tui.worker.runtime import Runtime, set_runtime

log = logging.getLogger("optiinfra.headless")


def run_headless(settings: Settings, workers: int, log_format: str = "text",
                 shutdown_timeout: float = 60.0, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1", api_port: int | None = None,
                 api_host: str = "127.0.0.1") -> int:
    """Serve until SIGTERM/SIGINT, then finish the tasks in flight (bounded) and return 0."""
    settings.alert_urls()  # a webhook without its URL variable is a start-up error
    setup_logging(settings, stdout=True, fmt=log_format)
    # Listeners are checked before anything starts: a refusal leaves nothing half-done.
    metrics_tokens = api_tokens = None
    if metrics_port and not access.is_loopback(metrics_host):
        metrics_tokens = access.tokens(settings)
        access.check_listener(metrics_host, "--metrics-host", metrics_tokens,
                              "the Prometheus listener")
    if api_port:
        from optiinfra_tui.api import require_api_extra

        require_api_extra()
        api_tokens = access.tokens(settings)
        access.require_tokens(api_tokens, "The HTTP API (--api-port)")
    rt = Runtime(settings)
    set_runtime(rt)
    rt.history()
    rt.claim_store("headless")  # another process owning the data dir is a start-up error
    rt.metrics()  # open now: a chDB path held by another process is a start-up error
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            log.warning("second %s: not waiting any longer", signal.Signals(signum).name)
            raise SystemExit(0)
        log.info("received %s: no new tasks; finishing the ones in flight (up to %.0f s)",
                 signal.Signals(signum).name, shutdown_timeout)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    pool = WorkerPool(rt, workers, "headless")
    metrics_server = api_server = None
    try:
        if metrics_port:
            from optiinfra_tui.worker.telemetry import serve

            try:
                metrics_server = serve(rt, metrics_port, metrics_host, metrics_tokens)
            except OSError as exc:
                raise ConfigError(f"--metrics-host {metrics_host} --metrics-port {metrics_port}: "
                                  f"can't listen there ({exc.strerror}). Choose a free port, "
                                  "or an address of this host.") from None
        if api_port:
            from optiinfra_tui.api.server import ApiServer

            api_server = ApiServer(rt, api_host, api_port, api_tokens)
            api_server.start()
        pool.start()
        labels = backend_labels(rt)
        log.info("headless consumer %s started: %d workers, %s mode (queue=%s, history=%s, "
                 "metrics=%s), schedules: %s", rt.consumer_id, workers, settings.mode,
                 labels["queue"], labels["history"], labels["metrics"],
                 ", ".join(s.name for s in settings.schedules) or "none")
        while not stop.wait(0.5):
            pass
        if pool.stop(shutdown_timeout):
            log.info("all tasks finished; exiting")
        else:
            log.warning("shutdown timeout of %.0f s elapsed with tasks in flight; their runs "
                        "are left running and will be recovered", shutdown_timeout)
    finally:
        if api_server is not None:
            api_server.stop()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        pool.agent.stop()
        rt.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
