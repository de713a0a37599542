"""One process's wiring: settings, the Huey instance with its tasks, and lazily opened stores.

Everything that runs collections (the dashboard, headless mode, `huey_consumer`, the CLI)
goes through a Runtime, so all of them share one code path.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from huey.api import Huey

from optiinfra_tui.datadir import open_to_others
from optiinfra_tui.settings import Settings, load_settings
from optiinfra_tui.storage import history
from optiinfra_tui.worker import owner
from optiinfra_tui.worker.activity import ActivityRegistry
from optiinfra_tui.worker.queue import build_huey

log = logging.getLogger("optiinfra.datadir")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        from optiinfra_tui.worker.tasks import register_tasks

        self.settings = settings
        # Read before this process adds its own (private) files: a warning, or None.
        self.open_data_dir = open_to_others(settings.home)
        if self.open_data_dir:
            log.warning(self.open_data_dir)
        self.huey: Huey = build_huey(settings)
        self.activity = ActivityRegistry()
        self.host = socket.gethostname()
        self.consumer_id = f"{self.host}:{os.getpid()}"
        self._metrics = None
        self._metrics_lock = threading.Lock()
        self._claim = None
        self.tasks = register_tasks(self)

    def claim_store(self, kind: str) -> None:
        """Own the data dir when the metrics store is chDB; StoreOwned names who has it."""
        if self._claim is None and owner.needs_owner(self.settings):
            self._claim = owner.claim_embedded(self.settings.home, kind)

    def may_collect(self, kind: str = "worker") -> bool:
        """Whether collections can run here: not when another process owns the chDB data dir."""
        if not owner.needs_owner(self.settings) or owner.holds(self.settings.home):
            return True
        try:
            self.claim_store(kind)
        except owner.StoreOwned:
            return False
        return True

    def history(self) -> None:
        """Connect the history models to this runtime's database (idempotent)."""
        history.connect(self.settings.database_url)

    def metrics(self):
        """The ClickHouse store, opened on first use: chDB costs ~250 MB, so only when needed."""
        with self._metrics_lock:
            if self._metrics is None:
                from optiinfra_tui.storage.metrics import open_metrics

                self._metrics = open_metrics(self.settings.clickhouse_url)
            return self._metrics

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._claim is not None:  # after chDB is closed: the next owner can open it
            owner.release(self._claim)
            self._claim = None


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The process-wide runtime built from the environment (what huey_config.py exposes)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime(load_settings())
        return _runtime


def set_runtime(rt: Runtime | None) -> None:
    global _runtime
    _runtime = rt
