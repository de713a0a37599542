"""One snapshot of workers, queue, schedules, stats and health: what `status` and the TUI show.

Everything is read from the shared stores (heartbeats, history, the queue), so a snapshot
taken on any host shows every consumer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from optiinfra_tui.formats import json_default
from optiinfra_tui.storage.embedded import embedded_missing
from optiinfra_tui.storage.history import (
    FAILED,
    RETRYING,
    SUCCESS,
    AlertState,
    CollectionRun,
    ScheduleSlot,
    WorkerHeartbeat,
    as_datetime,
    db,
    minute_sql,
    utcnow,
)
from optiinfra_tui.storage.history import (
    HEARTBEAT_STALE_AFTER as STALE_AFTER,
)
from optiinfra_tui.text import short_error
from optiinfra_tui.worker import schedules as sched
from optiinfra_tui.worker.health import Health, backend_labels, check_all, recorded
from optiinfra_tui.worker.owner import embedded_owner, needs_owner

if TYPE_CHECKING:  # runtime imports this module's callers: annotations only
    from optiinfra_tui.worker.runtime import Runtime


@dataclass
class WorkerInfo:
    consumer_id: str
    host: str
    pid: int
    kind: str
    thread: str
    state: str
    task: str
    run_id: int | None
    since: datetime
    processed: int
    failed: int
    beat_at: datetime


@dataclass
class QueuedTask:
    task_id: str
    name: str
    run_id: int | None
    eta: datetime | None


@dataclass
class QueueInfo:
    pending: int
    scheduled: list[QueuedTask]
    retrying: list[tuple[int, str, datetime | None]]  # run id, label, next attempt


@dataclass
class ScheduleInfo:
    name: str
    provider: str
    data_types: tuple[str, ...]
    every: str
    next_run: datetime | None
    last_slot: datetime | None
    paused: bool
    # Customers the fan-out skips here, each with the env var to set.
    no_credentials: list[tuple[str, str]] = field(default_factory=list)
    customers: int = 0  # customers of the provider, with or without credentials

    def credentials_note(self) -> str:
        """'no credentials: set API_KEY' when the fan-out skips every customer, or
        'skips acme (set ACME_KEY)' when it skips some; '' when it skips none."""
        if not self.no_credentials:
            return ""
        if len(self.no_credentials) == self.customers:
            names = ", ".join(dict.fromkeys(var for _, var in self.no_credentials))
            return f"no credentials: set {names}"
        return "skips " + ", ".join(f"{c} (set {v})" for c, v in self.no_credentials)


@dataclass
class Stats:
    window_minutes: int
    runs: int
    succeeded: int
    failed: int
    success_rate: float | None
    p50_ms: int | None
    p95_ms: int | None
    rows: int
    runs_per_minute: list[int] = field(default_factory=list)
    # When the newest run of the window finished: it moves when a run finishes (rows written).
    last_finished: datetime | None = None

    @classmethod
    def empty(cls, window_minutes: int = 60) -> Stats:
        return cls(window_minutes, 0, 0, 0, None, None, None, 0, [0] * window_minutes)


@dataclass
class ActiveAlert:
    """A condition some [[alerts]] entry is firing for (worker/alerts.py)."""

    condition: str  # failures:<provider>:<customer> | missed:<schedule> | consumers
    label: str  # a few words for the header: '<provider> failing', 'missed slot: nightly'
    summary: str  # what the webhook was told
    since: datetime
    alerts: list[str]  # the entries firing for it


@dataclass
class Snapshot:
    mode: str
    backends: dict[str, str]
    health: list[Health]
    workers: list[WorkerInfo]
    queue: QueueInfo | None
    schedules: list[ScheduleInfo]
    stats: Stats
    taken_at: datetime
    # Reads that failed after the checks ('history: OperationalError: ...'): shown, not raised.
    errors: list[str] = field(default_factory=list)
    # Which process runs the collections of an embedded store (chDB is one process per path):
    # its description, "" when none does; None when the stores are shared by every consumer.
    owner: str | None = None
    alerts: list[ActiveAlert] = field(default_factory=list)

    def to_json(self) -> dict:
        return json.loads(json.dumps(asdict(self), default=json_default))


def workers(now: datetime | None = None) -> list[WorkerInfo]:
    """Every worker thread of every consumer that beat within STALE_AFTER."""
    now = now or utcnow()
    out = []
    for hb in (WorkerHeartbeat.select().where(WorkerHeartbeat.beat_at >= now - STALE_AFTER)
               .order_by(WorkerHeartbeat.host, WorkerHeartbeat.pid)):
        threads = json.loads(hb.state or "[]")
        for t in threads:
            out.append(WorkerInfo(
                consumer_id=hb.consumer_id, host=hb.host, pid=hb.pid, kind=hb.kind,
                thread=t.get("name", "?"), state=t.get("state", "idle"), task=t.get("task", ""),
                run_id=t.get("run_id"), since=datetime.fromisoformat(t["since"]),
                processed=t.get("processed", 0), failed=t.get("failed", 0), beat_at=hb.beat_at))
    return out


def consumers(now: datetime | None = None) -> list[WorkerHeartbeat]:
    """Processes that take tasks off the queue and beat within STALE_AFTER.

    An inline `collect` beats too (so its run is not taken for an orphan), and a dashboard
    with --workers 0 only watches: neither will run a queued task.
    """
    now = now or utcnow()
    return list(WorkerHeartbeat.select().where(
        (WorkerHeartbeat.beat_at >= now - STALE_AFTER) & (WorkerHeartbeat.threads > 0)
        & (WorkerHeartbeat.kind != "cli")))


def queue_info(huey, limit: int = 20) -> QueueInfo:
    """Pending count, tasks waiting for their ETA, and runs waiting for a retry."""
    scheduled = []
    for task in huey.scheduled(limit=limit):
        kwargs = task.kwargs or {}
        scheduled.append(QueuedTask(task.id, task.name, kwargs.get("run_id"),
                                    task.eta.replace(tzinfo=None) if task.eta else None))
    retrying = [(r.id, f"{r.provider}/{r.customer_id}", r.next_attempt_at)
                for r in CollectionRun.select().where(CollectionRun.status == RETRYING)
                .order_by(CollectionRun.next_attempt_at).limit(limit)]
    return QueueInfo(pending=huey.pending_count(), scheduled=scheduled, retrying=retrying)


def schedule_info(settings, now: datetime | None = None) -> list[ScheduleInfo]:
    now = now or utcnow()
    paused = sched.paused_schedules()
    out = []
    for s in settings.schedules:
        last = (ScheduleSlot.select(ScheduleSlot.slot).where(ScheduleSlot.schedule == s.name)
                .order_by(ScheduleSlot.slot.desc()).first())
        customers = [c.id for c in settings.customers_with(s.provider)]
        missing = [(c, var) for c in customers
                   if (var := settings.missing_credential(c, s.provider))]
        out.append(ScheduleInfo(
            name=s.name, provider=s.provider, data_types=s.data_types,
            every=f"every {s.interval}s" if s.interval else f"cron {s.cron}",
            next_run=sched.next_run(s, now), last_slot=last.slot if last else None,
            paused=s.name in paused, no_credentials=missing, customers=len(customers)))
    return out


def active_alerts(default_customer: str = "") -> list[ActiveAlert]:
    """The conditions firing now, oldest first, each once whichever entries fire for it."""
    found: dict[str, ActiveAlert] = {}
    for st in (AlertState.select().where(AlertState.active == True)  # noqa: E712
               .order_by(AlertState.since, AlertState.id)):
        if st.condition in found:
            found[st.condition].alerts.append(st.alert)
        else:
            found[st.condition] = ActiveAlert(st.condition, _alert_label(st.condition,
                                                                         default_customer),
                                              st.summary, st.since, [st.alert])
    return list(found.values())


def _alert_label(condition: str, default_customer: str) -> str:
    kind, _, rest = condition.partition(":")
    if kind == "failures":
        provider, _, customer = rest.partition(":")
        # The default customer goes by the provider's name alone, as in the health checks.
        return f"{provider if customer == default_customer else rest} failing"
    if kind == "missed":
        return f"missed slot: {rest}"
    return "no consumer running" if kind == "consumers" else condition


# The percentiles shown (p50, p95) as fractions a/b: their ranks are exact in integers.
PERCENTILES = ((1, 2), (19, 20))
_TIMED = "CASE WHEN status = 'success' AND duration_ms IS NOT NULL THEN 1 ELSE 0 END"
# One pass over the window (read through finished_at's index): runs and rows per minute and
# status, and the timed successes' durations at the percentiles' ranks, ranked in the database.
_STATS_SQL = """
WITH w AS (SELECT status, finished_at, metrics_collected, duration_ms
           FROM collection_runs WHERE finished_at >= {param}),
ranked AS (SELECT duration_ms, ROW_NUMBER() OVER (ORDER BY {timed} DESC, duration_ms) AS pos,
                  SUM({timed}) OVER () AS n
           FROM w)
SELECT 0, {minute} AS minute, status, COUNT(*), SUM(metrics_collected), COUNT(duration_ms),
       MAX(finished_at)
FROM w GROUP BY minute, status
UNION ALL
SELECT 1, NULL, NULL, pos, duration_ms, n, NULL FROM ranked WHERE n > 0 AND pos IN ({ranks})
"""


def rank(n: int, a: int, b: int) -> int:
    """The 0-based nearest rank of percentile a/b among n sorted values: a/b * (n - 1),
    rounded half up."""
    return (2 * a * (n - 1) + b) // (2 * b)


def stats(window_minutes: int = 60, now: datetime | None = None) -> Stats:
    """Success rate, duration percentiles, rows and runs per clock minute, over the last
    `window_minutes` minutes (the current one included).

    Counted by the database in one statement: what crosses the wire is at most a few hundred
    numbers, however many runs the hour holds. The window starts on a minute, so the figures
    change only when a run finishes or a minute begins: a dashboard at rest need not redraw
    them.
    """
    now = now or utcnow()
    end = now.replace(second=0, microsecond=0)  # the end of the current minute
    end += timedelta(minutes=1) if end < now else timedelta(0)
    since = end - timedelta(minutes=window_minutes)
    database = db.obj
    sql = _STATS_SQL.format(
        param=database.param, timed=_TIMED, minute=minute_sql("finished_at", database),
        ranks=", ".join(f"(2 * {a} * (n - 1) + {b}) / {2 * b} + 1" for a, b in PERCENTILES))
    per_minute = [0] * window_minutes
    runs = ok = bad = total_rows = 0
    last: datetime | None = None
    ranked: dict[int, int] = {}
    timed = 0
    for kind, at, status, count, rows, durations, latest in database.execute_sql(sql, (since,)):
        if kind:  # a percentile: its 1-based rank, its duration, how many were timed
            ranked[count], timed = rows, durations
            continue
        idx = int((as_datetime(at) - since).total_seconds() // 60)
        if 0 <= idx < window_minutes:
            per_minute[idx] += count
        runs += count
        ok += count if status == SUCCESS else 0
        bad += count if status == FAILED else 0
        total_rows += int(rows or 0)
        latest = as_datetime(latest)
        last = latest if last is None or latest > last else last
    p50, p95 = (ranked.get(rank(timed, a, b) + 1) if timed else None for a, b in PERCENTILES)
    return Stats(
        window_minutes=window_minutes, runs=runs, succeeded=ok, failed=bad,
        success_rate=(ok / (ok + bad)) if ok + bad else None, p50_ms=p50, p95_ms=p95,
        rows=total_rows, runs_per_minute=per_minute, last_finished=last)


def health(rt: Runtime, live: bool = True) -> list[Health]:
    """Live checks of queue and history; metrics live only when that doesn't open chDB here.

    chDB is one process per path: a CLI must not open it beside a running consumer, so for
    chDB the consumer's last recorded check is reported instead, with when it was taken.
    Providers are always the consumers' recorded checks (the credentials are theirs).
    """
    embedded_metrics = rt.settings.clickhouse_url.startswith("chdb")
    results = check_all(rt, providers=False, metrics=live and not embedded_metrics) if live else []
    missing = embedded_missing(rt.settings.clickhouse_url)
    if missing:
        results.append(Health("metrics", False, None, missing))
    seen = {r.name for r in results}
    try:
        results += [h for h in recorded(provider_every=rt.settings.provider_check_interval)
                    if h.name not in seen]
    except Exception:
        pass  # history down: already reported by the live check
    return results


def snapshot(rt: Runtime, live_health: bool = True, checks: list[Health] | None = None,
             now: datetime | None = None) -> Snapshot:
    """Everything at once. A backend that is down shows in `health` or `errors`, never raised.

    `checks` are health results the caller already holds (the dashboard checks on its own
    cadence); `now` is the caller's clock, for schedules, stale heartbeats and the stats window.
    """
    now = now or utcnow()
    h = health(rt, live=live_health) if checks is None else checks
    snap = Snapshot(rt.settings.mode, backend_labels(rt), h, [], None, [], Stats.empty(), now,
                    owner=_owner(rt.settings))
    # A backend the checks just found down is not read again: that would wait out its timeout
    # twice. Any other failure is reported beside the checks.
    down = {x.name for x in h if not x.ok}
    if "history" not in down:
        try:
            rt.history()
            snap.workers = workers(now)
            snap.schedules = schedule_info(rt.settings, now)
            snap.stats = stats(now=now)
            snap.alerts = active_alerts(rt.settings.default_customer_id)
        except Exception as exc:
            snap.errors.append(f"history: {short_error(exc)}")
    if not down & {"history", "queue"}:
        try:
            snap.queue = queue_info(rt.huey)
        except Exception as exc:
            snap.errors.append(f"queue: {short_error(exc)}")
    return snap


def _owner(settings) -> str | None:
    if not needs_owner(settings):
        return None
    found = embedded_owner(settings.home)
    return found.describe() if found else ""
