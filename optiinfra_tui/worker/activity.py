"""What this process's worker threads are doing right now, for heartbeats and the dashboard.

Task code runs in the worker thread, so it reports its own start and end here; the
registry is the one place the heartbeat and the dashboard read from.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime

from optiinfra_tui.storage.history import utcnow

IDLE, BUSY = "idle", "busy"


@dataclass
class ThreadState:
    name: str
    state: str = IDLE
    run_id: int | None = None
    task: str = ""
    since: datetime = field(default_factory=utcnow)
    processed: int = 0
    failed: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["since"] = self.since.isoformat()
        return d


class ActivityRegistry:
    """Thread-safe map of worker thread name -> ThreadState."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[str, ThreadState] = {}
        self._listeners: list = []

    def register(self, name: str | None = None) -> None:
        name = name or threading.current_thread().name
        with self._lock:
            self._threads.setdefault(name, ThreadState(name))

    def began(self, run_id: int | None, task: str) -> None:
        name = threading.current_thread().name
        with self._lock:
            st = self._threads.setdefault(name, ThreadState(name))
            st.state, st.run_id, st.task, st.since = BUSY, run_id, task, utcnow()
        self._notify()

    def ended(self, ok: bool) -> None:
        name = threading.current_thread().name
        with self._lock:
            st = self._threads.setdefault(name, ThreadState(name))
            st.state, st.run_id, st.task, st.since = IDLE, None, "", utcnow()
            if ok:
                st.processed += 1
            else:
                st.failed += 1
        self._notify()

    def snapshot(self) -> list[ThreadState]:
        with self._lock:
            return [ThreadState(**asdict(s)) for s in sorted(self._threads.values(),
                                                             key=lambda s: s.name)]

    def totals(self) -> tuple[int, int]:
        with self._lock:
            return (sum(s.processed for s in self._threads.values()),
                    sum(s.failed for s in self._threads.values()))

    def add_listener(self, fn) -> None:
        """`fn()` is called from the worker thread after each change (the dashboard's hook)."""
        self._listeners.append(fn)

    def remove_listener(self, fn) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:  # a listener's bug must not fail a collection
                pass
