"""The dashboard's one reader thread: reads when woken, else once per `poll` seconds, and
posts only what changed, so an idle dashboard neither queries much nor redraws.

The history window is read again only when it may have changed: this process did something,
a run was added anywhere (the newest id moved), a run in view is not final yet, or
PAGE_REFRESH has passed (another process's edits no id reveals, such as a prune). Costs are
read again when a run finished (it wrote the rows), when the day changes, or every
`costs_every` seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from optiinfra_tui.storage.history import FINAL_STATUSES
from optiinfra_tui.tui.messages import CostsLoaded, PageLoaded, StateLoaded
from optiinfra_tui.tui.source import CostsData, HistoryQuery, Source

PAGE_REFRESH = 30.0
# What is on screen must never be more than a second old. A read late by up to ~0.2 s on a
# saturated host (a 64-thread slot beside it) would take a 1 s beat past that.
POLL = 0.8
_UNSEEN = object()


class Poller:
    def __init__(self, source: Source, post: Callable, poll: float = POLL,
                 health_every: float = 5.0, costs_every: float = 600.0,
                 batch_gap: float = 0.05, costs_enabled: bool = True,
                 costs_disabled_reason: str = "") -> None:
        self.source, self.post = source, post
        self.poll, self.health_every, self.costs_every = poll, health_every, costs_every
        self.batch_gap = batch_gap
        self.costs_enabled, self.costs_disabled_reason = costs_enabled, costs_disabled_reason
        self.query = HistoryQuery()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._want_health = True
        self._want_costs = True
        self._urgent = False
        self._last_state = self._last_page = self._last_costs = None
        self._health: list = []
        self._finished_seen: object = _UNSEEN
        self._newest: int | None = None
        self._costs_day = None
        self._page_read_at = 0.0

    def wake(self, health: bool = False, costs: bool = False) -> None:
        """Read again now (thread-safe): on activity, an action, or a new history window."""
        self._want_health |= health
        self._want_costs |= costs
        self._wake.set()

    def set_query(self, query: HistoryQuery) -> None:
        """Show another history window: read at once, without waiting for a batch."""
        self.query = query
        self._urgent = True
        self.wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self, cancelled: Callable[[], bool]) -> None:
        next_poll = next_health = next_costs = 0.0
        while not (self._stop.is_set() or cancelled()):
            woken = self._wake.wait(max(0.0, next_poll - time.monotonic()))
            if self._stop.is_set() or cancelled():
                return
            if self._urgent:  # the user is waiting for a history window: only that, now
                self._urgent = False
                self._wake.clear()
                self.read_page()
                if not self._wake.is_set() and time.monotonic() < next_poll:
                    continue
            elif woken:
                time.sleep(self.batch_gap)  # let a burst of activity land in one read
            self._wake.clear()
            now = time.monotonic()
            # Asked for (`h`), or the header's first: before the state, which shows it. The
            # timed one after it: a long read (a check per customer) delays the next screen,
            # not this one.
            now_too = self._want_health or not self._health
            if now_too:
                self._want_health = False
                self._health = self.source.health(live=True)
                next_health = now + self.health_every
            self.read_once(woken)
            if not now_too and now >= next_health:
                self._health = self.source.health(live=True)
                next_health = now + self.health_every
            if self._want_costs or now >= next_costs:
                self._want_costs = False
                self.read_costs()
                next_costs = time.monotonic() + self.costs_every
            # From this read's start: a slow read (a busy history) keeps the once-a-second pace.
            next_poll = now + self.poll

    def read_once(self, woken: bool = True) -> None:
        """One read of the state, and of the history window if it may have changed (`woken`:
        this process acted); posts each only if it changed."""
        state = self.source.state(self._health)
        # The clock alone changes nothing on screen, except a check's age label; nor does a
        # heartbeat's time (no panel shows it).
        comparable = replace(state, taken_at=None,
                             health=[(h, h.late(state.taken_at)) for h in state.health],
                             workers=[replace(w, beat_at=None) for w in state.workers])
        if comparable != self._last_state:
            self._last_state = comparable
            self.post(StateLoaded(state))
        finished, seen = state.stats.last_finished, self._finished_seen
        if seen is not _UNSEEN and finished is not None and (seen is None or finished > seen):
            self._want_costs = True  # a run ended: it may have written rows, the totals moved
        self._finished_seen = finished
        if state.taken_at.date() != self._costs_day:
            self._costs_day = state.taken_at.date()
            self._want_costs = True  # a new day: month to date and the days shown moved
        if self._page_due(woken):
            self.read_page()

    def _page_due(self, woken: bool) -> bool:
        page = self._last_page
        newest = self.source.newest_run()  # before the read: a run added after it shows next
        moved, self._newest = newest != self._newest, newest
        return (woken or moved or page is None or page.error is not None
                or any(r.status not in FINAL_STATUSES for r in page.rows)
                or time.monotonic() >= self._page_read_at + PAGE_REFRESH)

    def read_page(self) -> None:
        self._page_read_at = time.monotonic()
        page = self.source.history(self.query)
        if page != self._last_page:
            self._last_page = page
            self.post(PageLoaded(page))

    def read_costs(self) -> None:
        costs = (self.source.costs() if self.costs_enabled
                 else CostsData(error=self.costs_disabled_reason))
        if costs != self._last_costs:
            self._last_costs = costs
            self.post(CostsLoaded(costs))
