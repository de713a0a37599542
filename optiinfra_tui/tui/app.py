"""The dashboard app and `run_dashboard`, what plain `optiinfra-tui` runs."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.worker import get_current_worker

from optiinfra_tui.datadir import write_file
from optiinfra_tui.errors import OptiInfraError
from optiinfra_tui.settings import Settings
from optiinfra_tui.storage.history import close_connection
from optiinfra_tui.text import short_error
from optiinfra_tui.tui.keys import palette
from optiinfra_tui.tui.messages import Activity, CostsLoaded, PageLoaded, StateLoaded
from optiinfra_tui.tui.palette import Palette, use_palette
from optiinfra_tui.tui.poller import POLL, Poller
from optiinfra_tui.tui.screens.collect import CollectRequest
from optiinfra_tui.tui.screens.main import MainScreen
from optiinfra_tui.tui.source import CostsData, HistoryFilter, HistoryQuery, Source
from optiinfra_tui.worker import actions
from optiinfra_tui.worker.owner import StoreOwned, needs_owner

if TYPE_CHECKING:  # run_dashboard makes the runtime; the rest only annotates it
    from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.tui")

PREFS_FILE = "tui.json"  # in the data dir: the dashboard's remembered choices (its theme)


def _read_prefs(home: Path) -> dict:
    try:
        doc = json.loads((home / PREFS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or unreadable: the defaults
        return {}
    return doc if isinstance(doc, dict) else {}


class DashboardApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "OptiInfra"

    def __init__(self, rt: Runtime, pool=None, shutdown_timeout: float = 60.0,
                 source: Source | None = None, poll: float = POLL,
                 health_every: float = 5.0, costs_every: float = 600.0,
                 costs_enabled: bool = True, costs_disabled_reason: str = "",
                 handle_signals: bool = False, start_pool: bool = False,
                 watcher: bool = False) -> None:
        super().__init__()
        self.rt, self.pool, self.shutdown_timeout = rt, pool, shutdown_timeout
        # start_pool: the app starts the pool once its first frame is on screen.
        self.pool_started = pool is not None and not start_pool
        self.source = source or Source(rt)
        self.source.watcher = watcher
        self.poller = Poller(self.source, self.post_message, poll=poll,
                             health_every=health_every, costs_every=costs_every,
                             costs_enabled=costs_enabled,
                             costs_disabled_reason=costs_disabled_reason)
        self.history_filter = HistoryFilter()
        self.costs: CostsData | None = None
        self.pool_stopped = pool is None
        self._windows: list[int | None] = [None]  # before_id of each history window shown
        self._cursor = "keep"
        self._quitting = False
        self._handle_signals = handle_signals
        saved = _read_prefs(rt.settings.home).get("theme")
        if saved in self.available_themes:  # a theme since uninstalled: the default
            self.theme = saved
        use_palette(Palette.from_variables(self.get_css_variables()))

    def watch_theme(self, theme: str) -> None:
        """Take the theme's colours (the screens redraw on theme_changed_signal, sent after
        this) and remember it (ctrl+p, "Change theme") for the next start."""
        use_palette(Palette.from_variables(self.get_css_variables()))
        prefs = _read_prefs(self.rt.settings.home)
        if prefs.get("theme") == theme:
            return
        prefs["theme"] = theme
        try:
            write_file(self.rt.settings.home / PREFS_FILE, json.dumps(prefs))
        except OSError as exc:  # only a preference: the dashboard works without it
            log.warning("could not save the theme to %s: %s", PREFS_FILE, exc)

    def get_default_screen(self) -> Screen:
        return MainScreen(id="main")

    @property
    def main(self) -> MainScreen:
        return self.screen_stack[0]

    def on_mount(self) -> None:
        self.rt.activity.add_listener(self._on_worker_activity)
        # Nothing slow before the first frame: the poller's reads and health checks, and the
        # pool's agent (which opens chDB for its own check), start once it is drawn.
        self.call_after_refresh(self._start_background)
        if self._handle_signals:
            # SIGTERM/SIGHUP quit like q does: tasks finish (bounded), the terminal is restored.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, lambda: self.call_later(self.action_quit))

    def _start_background(self) -> None:
        if self._quitting:
            return
        if self.pool is not None and not self.pool_started:
            self.pool.start()  # before the poller, so its first read lists these workers
            self.pool_started = True
        if self.rt.open_data_dir:  # logged too, but the log file is out of sight
            self.notify(self.rt.open_data_dir, title="Data dir", severity="warning", timeout=30)
        self.run_worker(self._poll_loop, thread=True, group="poller", name="poller")

    def on_unmount(self) -> None:
        self.rt.activity.remove_listener(self._on_worker_activity)
        self.poller.stop()
        if self._handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _poll_loop(self) -> None:
        worker = get_current_worker()
        try:
            self.poller.run(lambda: worker.is_cancelled)
        finally:
            close_connection()

    def _on_worker_activity(self) -> None:
        # Called in a Huey worker thread: post_message is the thread-safe way in.
        self.post_message(Activity())

    # --- data arriving from the poller ---------------------------------------------------

    def on_activity(self, _: Activity) -> None:
        self.poller.wake()

    def on_state_loaded(self, msg: StateLoaded) -> None:
        if self.screen_stack:  # not while the app is being torn down
            try:
                self.main.apply_state(msg.state)
            except NoMatches:  # a poll that lands while quitting removes the panels
                pass

    def on_page_loaded(self, msg: PageLoaded) -> None:
        if msg.page.query != self.poller.query or not self.screen_stack:
            return  # a window the user has already moved away from
        cursor, self._cursor = self._cursor, "keep"
        self.main.apply_page(msg.page, cursor)

    def on_costs_loaded(self, msg: CostsLoaded) -> None:
        self.costs = msg.costs
        if not self.screen_stack:
            return
        self.main.apply_costs(msg.costs)
        from optiinfra_tui.tui.screens.costs import CostsScreen

        if isinstance(self.screen, CostsScreen):
            self.screen.show(msg.costs)

    # --- history windows and filter -------------------------------------------------------

    def move_history(self, direction: str) -> None:
        page = self.main.history.page
        if direction == "older" and page is not None and page.rows and page.has_more:
            self._windows.append(page.rows[-1].id)
            self._cursor = "top"
        elif direction == "newer" and len(self._windows) > 1:
            self._windows.pop()
            self._cursor = "bottom"
        elif direction == "newest":
            self._windows = [None]
            self._cursor = "top"
        else:
            return
        self._request_window()

    def _request_window(self) -> None:
        self.poller.set_query(HistoryQuery(self.history_filter, self._windows[-1],
                                           len(self._windows) - 1))

    def set_filter(self, flt: HistoryFilter | None) -> None:
        if flt is None:
            return
        self.history_filter = flt
        self._windows = [None]
        self._cursor = "top"
        self._request_window()

    # --- actions (each runs in a thread: they touch the queue and the database) -----------

    def start_collection(self, req: CollectRequest | None) -> None:
        if req is not None:
            self._act("Collect", lambda: actions.collect(self.rt, req.provider, req.customer_id,
                                                         list(req.data_types)),
                      lambda run: f"Run {run.id} queued: {run.provider} {run.data_types} "
                                  f"for {run.customer_id}.")

    def collect_everything(self) -> None:
        def done(out) -> str:
            skipped = "; ".join(f"{cid} has no credentials: set {var}"
                                for cid, var in dict(out.no_credentials).items())
            text = (f"{len(out.runs)} collection(s) queued." if out.runs
                    else "Nothing to queue: no schedule has a customer with credentials.")
            return f"{text} {skipped}." if skipped else text

        self._act("Collect everything", lambda: actions.collect_everything(self.rt), done)

    def health_check(self) -> None:
        self._act("Health check", lambda: actions.health_check(self.rt),
                  lambda _: "Health check queued; the header shows the results."
                  + ("" if self.pool else " (A process with workers runs it: none here.)"))
        self.poller.wake(health=True)
        self.set_timer(2.0, lambda: self.poller.wake(health=True))

    def retry_run(self, run_id: int) -> None:
        self._act("Retry", lambda: actions.retry(self.rt, run_id),
                  lambda run: f"Run {run_id} retried as run {run.id}.")

    def revoke_run(self, run_id: int) -> None:
        self._act("Revoke", lambda: actions.revoke(self.rt, run_id),
                  lambda run: f"Run {run_id} revoked.")

    def toggle_schedules(self) -> None:
        self._act("Schedules", lambda: actions.toggle_schedules(self.rt),
                  lambda paused: "Schedules paused." if paused else "Schedules resumed.")

    @work(thread=True, group="actions")
    def _act(self, label: str, fn: Callable, done: Callable) -> None:
        try:
            self.notify(done(fn()), title=label)
        except OptiInfraError as exc:
            self.notify(str(exc), title=label, severity="error", timeout=8)
        except Exception as exc:
            log.exception("%s failed", label)
            self.notify(f"{short_error(exc)} (details in {self.rt.settings.log_path})",
                        title=f"{label} failed", severity="error", timeout=8)
        finally:
            close_connection()
            self.poller.wake()

    # --- command palette -------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        main = self.main
        for title, help_text, action in palette():
            yield SystemCommand(title, help_text, lambda a=action: main.run_from_palette(a))
        yield SystemCommand("Quit", "Quit; waits for tasks in flight (q)", self.action_quit)
        yield from (c for c in super().get_system_commands(screen) if c.title != "Quit")

    # --- quitting --------------------------------------------------------------------------

    async def action_quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        self.poller.stop()
        if self.pool is not None and self.pool.in_flight():
            from optiinfra_tui.tui.screens.quitting import QuittingScreen

            self.push_screen(QuittingScreen(self.pool.in_flight, self.shutdown_timeout))
        self._stop_pool()

    @work(thread=True, group="quit")
    def _stop_pool(self) -> None:
        if self.pool is not None and self.pool_started:
            try:
                if not self.pool.stop(self.shutdown_timeout):
                    log.warning("quit: tasks still in flight after %.0f s; their runs will be "
                                "recovered", self.shutdown_timeout)
            except Exception:
                log.exception("quit: stopping the worker pool failed")
            self.pool_stopped = True
        self.call_from_thread(self.exit)

    # --- nothing reaches the terminal ------------------------------------------------------

    def _handle_exception(self, error: Exception) -> None:
        log.error("dashboard crashed", exc_info=error)
        super()._handle_exception(error)

    def _print_error_renderables(self) -> None:
        # The traceback is in the log file; run_dashboard prints one line saying so.
        self._exit_renderables.clear()


def _alert_watcher(rt: Runtime):
    """An AlertWatcher for a watching dashboard, started, when this environment has every
    alert's URL; None otherwise (watching needs no webhook)."""
    if not rt.settings.alerts:
        return None
    try:
        urls = rt.settings.alert_urls()
    except OptiInfraError as exc:
        log.info("alerts are not watched from this dashboard: %s", exc)
        return None
    from optiinfra_tui.worker.alerts import AlertWatcher

    return AlertWatcher(rt, urls).start()


def run_dashboard(settings: Settings, workers: int, shutdown_timeout: float = 60.0) -> int:
    """Run the dashboard with `workers` embedded worker threads; returns the exit code."""
    from optiinfra_tui.logs import setup_logging
    from optiinfra_tui.tui.terminal import quiet_terminal, use_tty_size
    from optiinfra_tui.worker.pool import WorkerPool
    from optiinfra_tui.worker.runtime import Runtime, set_runtime

    if workers:
        settings.alert_urls()  # a webhook without its URL variable is a start-up error
    setup_logging(settings, stdout=False)
    rt = Runtime(settings)
    set_runtime(rt)
    chdb = needs_owner(settings)
    reason = ("chDB belongs to the process that collects; with --workers 0 set CLICKHOUSE_URL "
              "to a ClickHouse server to see costs here.")
    if workers and chdb:
        try:
            rt.claim_store("dashboard")
        except StoreOwned as exc:
            # Another process runs this data dir's collections: watch it, with no workers
            # (they could not open chDB) and without opening chDB here.
            log.info("watching: %s owns %s", exc.owner.describe(), settings.home)
            workers = 0
            reason = (f"chDB belongs to {exc.owner.describe()}, which runs the collections; "
                      "set CLICKHOUSE_URL to a ClickHouse server to see costs here too.")
    pool = WorkerPool(rt, workers, "dashboard") if workers else None
    # Watching, it looks at the alerts' conditions too: no consumer can tell that they all
    # stopped. (With workers, the pool's agent does.)
    alerts = None if workers else _alert_watcher(rt)
    app = DashboardApp(
        rt, pool, shutdown_timeout,
        # chDB allows one process per data path: a watch-only dashboard must not take it
        # from the headless consumer that writes there.
        costs_enabled=bool(workers) or not chdb, costs_disabled_reason=reason,
        handle_signals=True, start_pool=True, watcher=not workers)
    use_tty_size(app)
    with quiet_terminal(settings.log_path):
        try:
            app.run()
        finally:
            if pool is not None and app.pool_started and not app.pool_stopped:
                pool.stop(0)
            if alerts is not None:
                alerts.stop()
            rt.close()
    if app.return_code:
        print(f"optiinfra-tui: the dashboard stopped on an unexpected error; the details are "
              f"in {settings.log_path}.")
    return app.return_code or 0
