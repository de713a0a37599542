"""Alerts: the conditions worth a webhook, found by every consumer and claimed by one of them.

The conditions: a (customer, provider) with `after_failures` failed scheduled runs and no
success since; a schedule slot that passed unclaimed while consumers were running; no
consumer beating any more (seen by a process that isn't one: a watching dashboard). Each
occurrence moves its `alert_states` row with a unique INSERT or a conditional UPDATE, and
only the process whose write took queues the message, as a schedule slot's unique row makes
one consumer run it. The end of it (the next success, a slot run, a heartbeat back) is
claimed and queued once the same way; webhooks.py sends what was queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import peewee as pw

from optiinfra_tui.settings import Alert, Settings
from optiinfra_tui.storage.history import (
    FAILED,
    HEARTBEAT_STALE_AFTER,
    SUCCESS,
    AlertState,
    CollectionRun,
    ScheduleSlot,
    ScheduleState,
    WorkerHeartbeat,
    close_connection,
    db,
    utcnow,
)
from optiinfra_tui.text import first_line, short_error
from optiinfra_tui.worker import webhooks
from optiinfra_tui.worker.monitor import consumers
from optiinfra_tui.worker.schedules import last_closed_slot
from optiinfra_tui.worker.webhooks import FIRING, RESOLVED

if TYPE_CHECKING:  # runtime imports this module's callers: annotations only
    import httpx

    from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.alerts")

EVERY = 5.0  # seconds between two looks at the conditions
# A tick in progress may still claim a slot this long after its window closed.
GRACE = timedelta(seconds=10)
# Heartbeats older than this belong to consumers long gone, not to ones that just stopped.
STALE_WINDOW = timedelta(days=1)
FAILURES, MISSED, CONSUMERS = "failures", "missed", "consumers"


@dataclass(frozen=True)
class Change:
    """A condition starting (firing) or ending (resolved) for one alert."""

    alert: Alert
    event: str
    condition: str
    episode: str
    summary: str
    details: dict[str, str] = field(default_factory=dict)


def episode_of(value: int | datetime) -> str:
    """An occurrence's identity as text that sorts like the value under any collation."""
    if isinstance(value, datetime):
        return value.strftime("%Y%m%d%H%M%S%f")
    return f"{value:020d}"


def _time_of(episode: str) -> datetime:
    return datetime.strptime(episode, "%Y%m%d%H%M%S%f")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Evaluator:
    """Finds the conditions at a moment and claims their changes, for one process."""

    def __init__(self, settings: Settings, sender: str, started_at: datetime) -> None:
        self.settings = settings
        self.sender = sender  # host:pid, written on the messages it sends
        # Slots before this process started are not its to judge (it wasn't there to see).
        self.started_at = started_at

    def run(self, now: datetime, check_consumers: bool = True) -> list[Change]:
        """Claim every change due at `now`; returns those this process won (and queued)."""
        alerts = self.settings.alerts
        if not alerts:
            return []
        states = {(s.alert, s.condition): s for s in AlertState.select()}
        live = consumers(now)
        changes = [*self._failures(alerts, states),
                   *self._missed(alerts, states, now, bool(live)),
                   *self._consumers(alerts, states, now, live, check_consumers)]
        won = [c for c in changes if _claim(c, states.get((c.alert.name, c.condition)), now)]
        for c in won:
            log.log(logging.WARNING if c.event == FIRING else logging.INFO, "alert %s %s: %s",
                    c.alert.name, c.event, c.summary)
        return won

    # --- failed scheduled runs --------------------------------------------------------------

    def _failures(self, alerts: tuple[Alert, ...], states: dict) -> Iterator[Change]:
        pairs = {(c.id, s.provider) for s in self.settings.schedules
                 for c in self.settings.customers_with(s.provider)}
        for (_, condition), st in states.items():  # firing for a pair no longer scheduled
            kind, provider, customer = (condition.split(":", 2) + ["", ""])[:3]
            if st.active and kind == FAILURES:
                pairs.add((customer, provider))
        # The newest finished runs of each pair, read through its (customer_id, id) index: a
        # streak, and the success that ended the last one, are at the top. Wider than every
        # threshold, so that a success among them is seen before a new streak could hide it.
        window = 2 * max(a.after_failures for a in alerts) + 20
        for customer, provider in sorted(pairs):
            pair = (CollectionRun.customer_id == customer) & (CollectionRun.provider == provider)
            recent = (CollectionRun.select(CollectionRun.id, CollectionRun.status,
                                           CollectionRun.trigger)
                      .where(pair, CollectionRun.status.in_((SUCCESS, FAILED)))
                      .order_by(CollectionRun.id.desc()).limit(window).tuples())
            ok, failed = None, 0
            for run_id, status, trigger in recent:
                if status == SUCCESS:
                    ok = run_id
                    break
                failed += trigger == "schedule"
            condition = f"{FAILURES}:{provider}:{customer}"
            details = {"provider": provider, "customer": customer}
            who = f"{provider} for customer {customer}"
            for alert in alerts:
                st = states.get((alert.name, condition))
                if st is not None and st.active:
                    if ok is not None and ok > int(st.episode):
                        after = _failed_scheduled(pair, int(st.episode)).where(
                            CollectionRun.id < ok).count()
                        yield Change(alert, RESOLVED, condition, st.episode,
                                     f"{who} recovered: run {ok} succeeded after "
                                     f"{_plural(after, 'failed scheduled run')}.", details)
                    continue
                if failed >= alert.after_failures:
                    # The streak began after the last success: its id names the occurrence.
                    last_ok = ok if ok is not None else _last_success(pair)
                    if not _seen(st, episode_of(last_ok)):
                        yield Change(alert, FIRING, condition, episode_of(last_ok),
                                     _failing(who, pair, last_ok), details)

    # --- schedule slots nobody ran -------------------------------------------------------------

    def _missed(self, alerts: tuple[Alert, ...], states: dict, now: datetime,
                anyone: bool) -> Iterator[Change]:
        changed = {s.schedule: s for s in ScheduleState.select()}
        for schedule in self.settings.schedules:
            condition = f"{MISSED}:{schedule.name}"
            details = {"schedule": schedule.name}
            for alert in alerts:
                st = states.get((alert.name, condition))
                if st is None or not st.active:
                    continue
                ran = (ScheduleSlot.select().where(ScheduleSlot.schedule == schedule.name,
                                                   ScheduleSlot.slot > _time_of(st.episode))
                       .order_by(ScheduleSlot.slot).first())
                if ran is not None:
                    yield Change(alert, RESOLVED, condition, st.episode,
                                 f"schedule {schedule.name} runs again: the {ran.slot:%H:%M:%S} "
                                 f"UTC slot was claimed by {ran.claimed_by}.", details)
            slot = last_closed_slot(schedule, now - GRACE)
            state = changed.get(schedule.name)
            # No consumer at all is the consumers alert's; a pause (or one lifted since the
            # slot) explains a slot nobody ran.
            if (not anyone or slot < self.started_at
                    or state is not None and (state.paused or state.updated_at > slot)):
                continue
            if ScheduleSlot.select().where(ScheduleSlot.schedule == schedule.name,
                                           ScheduleSlot.slot == slot).exists():
                continue
            summary = (f"schedule {schedule.name}: the {slot:%Y-%m-%d %H:%M:%S} UTC slot passed "
                       "without any consumer running it (is the queue reachable from them?).")
            for alert in alerts:
                down = states.get((alert.name, CONSUMERS))
                if down is not None and (down.active or down.updated_at >= slot):
                    continue  # nobody ran then: the consumers alert told of it already
                if not _seen(states.get((alert.name, condition)), episode_of(slot)):
                    yield Change(alert, FIRING, condition, episode_of(slot), summary,
                                 dict(details, slot=f"{slot:%Y-%m-%dT%H:%M:%SZ}"))

    # --- consumers that stopped beating ----------------------------------------------------

    def _consumers(self, alerts: tuple[Alert, ...], states: dict, now: datetime,
                   live: list[WorkerHeartbeat], check: bool) -> Iterator[Change]:
        if live:
            names = ", ".join(sorted(hb.consumer_id for hb in live))
            for alert in alerts:
                st = states.get((alert.name, CONSUMERS))
                if st is not None and st.active:
                    yield Change(alert, RESOLVED, CONSUMERS, st.episode,
                                 f"consumers are running again: {names}.")
            return
        if not check:
            return
        stale = list(WorkerHeartbeat.select().where(
            WorkerHeartbeat.threads > 0, WorkerHeartbeat.kind != "cli",
            WorkerHeartbeat.beat_at < now - HEARTBEAT_STALE_AFTER,
            WorkerHeartbeat.beat_at >= now - STALE_WINDOW).order_by(WorkerHeartbeat.beat_at))
        if not stale:
            return  # none ever ran, or every one stopped cleanly (its heartbeat deleted)
        last = stale[-1].beat_at
        summary = (f"no consumer is running: every consumer's heartbeat is stale (the last "
                   f"beat at {last:%Y-%m-%d %H:%M:%S} UTC, from {stale[-1].consumer_id}; "
                   f"{_plural(len(stale), 'consumer')} stopped without saying so).")
        for alert in alerts:
            if not _seen(states.get((alert.name, CONSUMERS)), episode_of(last)):
                yield Change(alert, FIRING, CONSUMERS, episode_of(last), summary)


def _last_success(pair: pw.Expression) -> int:
    """The id of the pair's newest success, 0 if none: read once per streak, when it fires."""
    ok = (CollectionRun.select(CollectionRun.id).where(pair, CollectionRun.status == SUCCESS)
          .order_by(CollectionRun.id.desc()).first())
    return ok.id if ok else 0


def _failed_scheduled(pair: pw.Expression, after_id: int) -> pw.ModelSelect:
    return CollectionRun.select(CollectionRun.id).where(
        pair, CollectionRun.status == FAILED, CollectionRun.trigger == "schedule",
        CollectionRun.id > after_id)


def _failing(who: str, pair: pw.Expression, last_ok: int) -> str:
    count = _failed_scheduled(pair, last_ok).count()
    last = (CollectionRun.select().where(pair, CollectionRun.status == FAILED,
                                         CollectionRun.trigger == "schedule")
            .order_by(CollectionRun.id.desc()).first())
    error = f"{last.error_kind}: {first_line(last.error_message or '', 200)}" if last else ""
    since = f"since run {last_ok} succeeded" if last_ok else "and none has succeeded yet"
    return (f"{who}: {_plural(count, 'scheduled run')} failed in a row {since}; the last, "
            f"run {last.id if last else '?'}, with {error}")


def _seen(state: AlertState | None, episode: str) -> bool:
    """Whether this occurrence was claimed already (firing now, or fired and ended)."""
    return state is not None and (state.active or state.episode >= episode)


def _claim(change: Change, state: AlertState | None, now: datetime) -> bool:
    """Move the condition's row for this change and queue its message; True for one process
    of all: its INSERT or conditional UPDATE took, every other one's didn't."""
    a, cond = change.alert, change.condition
    mine = (AlertState.alert == a.name) & (AlertState.condition == cond)
    with db.atomic():
        if change.event == RESOLVED:
            won = AlertState.update(active=False, summary=change.summary, updated_at=now).where(
                mine, AlertState.active == True, AlertState.episode == change.episode  # noqa: E712
            ).execute() == 1
        else:
            try:
                with db.atomic():
                    AlertState.create(alert=a.name, condition=cond, active=True,
                                      episode=change.episode, summary=change.summary, since=now,
                                      updated_at=now)
                won = True
            except pw.IntegrityError:
                won = AlertState.update(active=True, episode=change.episode,
                                        summary=change.summary, since=now, updated_at=now).where(
                    mine, AlertState.active == False,  # noqa: E712
                    AlertState.episode < change.episode).execute() == 1
        if won:
            since = state.since if change.event == RESOLVED and state is not None else now
            webhooks.queue(a, change.event, cond, webhooks.body(
                a, change.event, cond, change.summary, change.details, now, since))
    return won


class AlertWatcher:
    """Looks at the conditions every EVERY seconds and sends what is queued, in a thread of its
    own: a slow webhook holds up no worker and no heartbeat (one request at a time, each
    bounded by webhooks.TIMEOUT)."""

    def __init__(self, rt: Runtime, urls: dict[str, str],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.rt, self.urls, self.clock = rt, urls, clock
        self.evaluator = Evaluator(rt.settings, rt.consumer_id, clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None  # made in the thread: importing httpx holds up no first frame
        # Since when the history store has answered; see check_consumers in run_once.
        self._reachable_since = time.monotonic()
        self._last_error: str | None = None

    def start(self) -> AlertWatcher:
        self._thread = threading.Thread(target=self._loop, name="Alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop looking; a request in flight is not waited for (its message's lease runs
        out and another process sends it), so a hanging webhook never delays a shutdown."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def run_once(self) -> list[Change]:
        """One look and one delivery pass; returns the changes this process claimed."""
        self.rt.history()
        # After an outage every heartbeat is stale until the live consumers beat again: give
        # them the time to, or a database coming back would page that nothing runs.
        settled = time.monotonic() - self._reachable_since >= HEARTBEAT_STALE_AFTER.total_seconds()
        won = self.evaluator.run(self.clock(), check_consumers=settled)
        if self._client is None:
            self._client = webhooks.client()
        webhooks.deliver(self._client, self.rt.settings.alerts, self.urls, self.rt.consumer_id)
        return won

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.run_once()
                    if self._last_error is not None:
                        log.info("alerts: the history store answers again")
                        self._last_error = None
                except Exception as exc:
                    self._reachable_since = time.monotonic()
                    text = short_error(exc, 300, self.rt.settings.secrets())
                    if text != self._last_error:  # one line per change of state
                        log.warning("alerts: can't look at the conditions (%s); retrying", text)
                        self._last_error = text
                self._stop.wait(EVERY)
        finally:
            if self._client is not None:
                self._client.close()
            close_connection()
