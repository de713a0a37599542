"""When each schedule is due, and the claim that lets many consumers run each slot once.

Huey's own periodic tasks run once per consumer, so several consumers would each enqueue a
copy. Instead every consumer ticks, and the one whose INSERT of (schedule, slot) succeeds
runs that slot.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import peewee as pw
from cronsim import CronSim

from optiinfra_tui.cron import parse_cron
from optiinfra_tui.settings import Schedule
from optiinfra_tui.storage.history import ScheduleSlot, ScheduleState, db, utcnow

# A slot is still worth running this long after it began (a consumer restarting, a slow
# tick); older slots are skipped rather than run late on start-up.
MAX_LATENESS = timedelta(seconds=120)


def epoch_slot(interval: int, now: datetime) -> datetime:
    """The start of the `interval`-second slot `now` falls in (slots count from the epoch)."""
    epoch = datetime(1970, 1, 1)
    seconds = int((now - epoch).total_seconds())
    return epoch + timedelta(seconds=seconds - seconds % interval)


def current_slot(schedule: Schedule, now: datetime) -> datetime | None:
    """The start of the slot `now` falls in, if that slot is due to run (naive UTC)."""
    if schedule.interval:
        start = epoch_slot(schedule.interval, now)
    else:
        # Searching back from the next whole second makes a slot starting exactly at `now` count.
        after = now.replace(microsecond=0) + timedelta(seconds=1)
        start = next(CronSim(parse_cron(schedule.cron), after, reverse=True))
    return start if now - start <= MAX_LATENESS else None


def last_closed_slot(schedule: Schedule, now: datetime) -> datetime:
    """The start of the newest slot that can no longer be claimed at `now` (naive UTC).

    A slot can be claimed while it is the current one and at most MAX_LATENESS old.
    """
    if schedule.interval:
        start = epoch_slot(schedule.interval, now)
        if now - start > min(timedelta(seconds=schedule.interval), MAX_LATENESS):
            return start
        return start - timedelta(seconds=schedule.interval)
    expr = parse_cron(schedule.cron)
    start = next(CronSim(expr, now.replace(microsecond=0) + timedelta(seconds=1), reverse=True))
    following = next(CronSim(expr, start))
    if now - start > min(following - start, MAX_LATENESS):
        return start
    return next(CronSim(expr, start, reverse=True))


def next_run(schedule: Schedule, now: datetime) -> datetime | None:
    """The start of the first slot after `now` (naive UTC)."""
    if schedule.interval:
        return epoch_slot(schedule.interval, now) + timedelta(seconds=schedule.interval)
    return next(CronSim(parse_cron(schedule.cron), now), None)


def claim(schedule_name: str, slot: datetime, consumer_id: str) -> bool:
    """True for exactly one caller per (schedule, slot), across every process."""
    try:
        with db.atomic():
            ScheduleSlot.create(schedule=schedule_name, slot=slot, claimed_by=consumer_id)
        return True
    except pw.IntegrityError:
        return False


def unclaim(schedule_name: str, slot: datetime) -> None:
    """Give a claimed slot back (its task never reached the queue)."""
    ScheduleSlot.delete().where(ScheduleSlot.schedule == schedule_name,
                                ScheduleSlot.slot == slot).execute()


def forget(schedule_name: str, older_than: datetime) -> int:
    """Delete one claim name's slots older than `older_than` (frequent internal claims)."""
    return ScheduleSlot.delete().where(ScheduleSlot.schedule == schedule_name,
                                       ScheduleSlot.slot < older_than).execute()


def paused_schedules() -> set[str]:
    return {s.schedule for s in ScheduleState.select().where(ScheduleState.paused == True)}  # noqa: E712


def set_paused(names: list[str], paused: bool) -> None:
    with db.atomic():
        for name in names:
            (ScheduleState.insert(schedule=name, paused=paused, updated_at=utcnow())
             .on_conflict(conflict_target=[ScheduleState.schedule],
                          update={ScheduleState.paused: paused,
                                  ScheduleState.updated_at: utcnow()})
             .execute())


def due(schedules: tuple[Schedule, ...], now: datetime, consumer_id: str,
        settled: set | None = None) -> list[tuple[Schedule, datetime]]:
    """The schedules whose current slot this consumer has just claimed.

    `settled` remembers the (schedule, slot) pairs already decided here, so an idle consumer
    doesn't try the same INSERT every second for the whole slot.
    """
    settled = set() if settled is None else settled
    candidates = [(s, slot) for s in schedules
                  if (slot := current_slot(s, now)) is not None and (s.name, slot) not in settled]
    if not candidates:
        return []
    paused = paused_schedules()
    won = []
    for schedule, slot in candidates:
        if schedule.name in paused:
            continue
        settled.add((schedule.name, slot))
        if claim(schedule.name, slot, consumer_id):
            won.append((schedule, slot))
    # Slots end; forget those that can no longer come round again.
    for key in [k for k in settled if now - k[1] > MAX_LATENESS * 2]:
        settled.discard(key)
    return won

