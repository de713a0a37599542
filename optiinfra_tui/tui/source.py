"""Every read the dashboard makes, as plain data: called from thread workers, never the UI thread.

Each method catches backend failures and returns them as data, so a down backend is shown,
never raised into the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from optiinfra_tui.storage.history import CollectionRun, utcnow
from optiinfra_tui.storage.queries import CostSummary, CostTotal
from optiinfra_tui.text import short_error
from optiinfra_tui.worker import monitor, runs
from optiinfra_tui.worker.health import Health
from optiinfra_tui.worker.monitor import Snapshot, WorkerInfo
from optiinfra_tui.worker.runs import RunRow

if TYPE_CHECKING:  # run_dashboard makes the runtime; the rest only annotates it
    from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.tui")

PAGE_SIZE = 100


@dataclass(frozen=True)
class HistoryFilter:
    status: str | None = None
    provider: str | None = None
    customer_id: str | None = None
    text: str | None = None

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in (("status", self.status), ("provider", self.provider),
                                          ("customer", self.customer_id), ("text", self.text))
                 if v]
        return " ".join(parts)


@dataclass(frozen=True)
class HistoryQuery:
    """Which window of the history to show: newest first, below `before_id`."""

    filter: HistoryFilter = HistoryFilter()
    before_id: int | None = None
    page: int = 0


@dataclass(frozen=True)
class HistoryPage:
    query: HistoryQuery
    rows: tuple[RunRow, ...]
    has_more: bool
    error: str | None = None


TOP_SERVICES = 12  # the costs view's services, in each currency


def by_currency(totals: list[CostTotal], summary: list[CostSummary],
                top: int | None = None) -> list[CostTotal]:
    """`totals` (largest first in each currency) in the summary's order of currencies, the
    `top` largest of each: amounts of different currencies can't be ranked together."""
    order = {s.currency: n for n, s in enumerate(summary)}
    kept: dict[str, int] = {}
    out = []
    for t in sorted(totals, key=lambda t: order.get(t.currency, len(order))):
        kept[t.currency] = kept.get(t.currency, 0) + 1
        if top is None or kept[t.currency] <= top:
            out.append(t)
    return out


@dataclass
class CostsData:
    by_day: list[tuple[date, str, str, Decimal]] = field(default_factory=list)  # provider, currency
    summary: list[CostSummary] = field(default_factory=list)  # one per currency, largest first
    by_provider: list = field(default_factory=list)
    by_service: list = field(default_factory=list)
    today: date | None = None
    error: str | None = None


@dataclass
class RunDetail:
    run: CollectionRun | None
    attempts: list
    retries: list[RunRow]
    error: str | None = None


class Source:
    """The dashboard's reads, bound to one Runtime; `clock` is swappable so screens are stable."""

    def __init__(self, rt: Runtime, clock: Callable[[], datetime] = utcnow, metrics=None) -> None:
        self.rt = rt
        self.clock = clock
        self._metrics = metrics or rt.metrics
        self.watcher = False  # no workers here: say which process does the work

    def health(self, live: bool) -> list[Health]:
        try:
            return monitor.health(self.rt, live=live)
        except Exception as exc:  # monitor.health already reports most failures as data
            return [Health("history", False, None, short_error(exc))]

    def state(self, health: list[Health]) -> Snapshot:
        """The monitor's snapshot, with this process's threads as they are now."""
        now = self.clock()
        # The default customer's checks go by the provider's name alone: '<provider> ● ok'.
        suffix = ":" + self.rt.settings.default_customer_id
        health = [replace(h, name=h.name.removesuffix(suffix)) if h.name.endswith(suffix)
                  else h for h in health]  # (a check per customer: 10,000 copies a second)
        snap = monitor.snapshot(self.rt, checks=health, now=now)
        others = [w for w in snap.workers if w.consumer_id != self.rt.consumer_id]
        snap.workers = self.live_workers(now) + others
        return snap

    def watching(self, snap: Snapshot) -> str | None:
        """Who runs the collections, for a dashboard without workers of its own."""
        if not self.watcher:
            return None
        if snap.owner is None:
            return "workers in other processes (see Workers)"
        return f"workers in {snap.owner}" if snap.owner else "no process runs workers"

    def live_workers(self, now: datetime) -> list[WorkerInfo]:
        """This process's threads, straight from the activity registry (no heartbeat delay)."""
        rt = self.rt
        host, pid = rt.host, int(rt.consumer_id.rsplit(":", 1)[1])
        return [WorkerInfo(rt.consumer_id, host, pid, "dashboard", t.name, t.state, t.task,
                           t.run_id, t.since, t.processed, t.failed, now)
                for t in rt.activity.snapshot()]

    def history(self, query: HistoryQuery, limit: int = PAGE_SIZE) -> HistoryPage:
        f = query.filter
        try:
            self.rt.history()
            found = runs.list_runs(status=f.status, provider=f.provider,
                                   customer_id=f.customer_id, text=f.text, limit=limit + 1,
                                   before_id=query.before_id)
        except Exception as exc:
            return HistoryPage(query, (), False, f"history: {short_error(exc)}")
        return HistoryPage(query, tuple(RunRow.of(r) for r in found[:limit]), len(found) > limit)

    def newest_run(self) -> int | None:
        """The newest run's id, which any new run moves; None when the history is unreadable."""
        try:
            self.rt.history()
            return runs.newest_run_id()
        except Exception:
            return None

    def detail(self, run_id: int) -> RunDetail:
        try:
            self.rt.history()
            run = runs.get_run(run_id)
            retries = [RunRow.of(r) for r in CollectionRun.select()
                       .where(CollectionRun.retry_of == run_id).order_by(CollectionRun.id)]
            return RunDetail(run, runs.attempts(run_id), retries)
        except Exception as exc:
            return RunDetail(None, [], [], f"history: {short_error(exc)}")

    def costs(self, days: int = 30) -> CostsData:
        try:
            store = self._metrics()
            today = self.clock().date()
            summary = list(store.summary(today))
            return CostsData(by_day=list(store.spend_by_day_and_provider(days=days, today=today)),
                             summary=summary,
                             by_provider=by_currency(store.costs(by="provider"), summary),
                             by_service=by_currency(store.costs(by="service"), summary,
                                                    TOP_SERVICES),
                             today=today)
        except Exception as exc:
            log.warning("costs view: metrics unavailable: %s", short_error(exc))
            return CostsData(error=short_error(exc))

