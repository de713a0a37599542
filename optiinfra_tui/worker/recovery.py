"""Runs orphaned by a consumer that died mid-task: found and re-enqueued, once.

Huey has no acknowledgements, so a killed consumer's task is simply gone. Its run is still
`running` in the history, owned by a consumer whose heartbeat has stopped: that is how any
other consumer recognises it. A run still `queued` or `retrying` long after it was due,
whose task is neither in the queue nor in its schedule, was lost the same way.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from optiinfra_tui.storage.history import (
    FAILED,
    QUEUED,
    RETRYING,
    RUNNING,
    CollectionRun,
    RunAttempt,
    WorkerHeartbeat,
    db,
    utcnow,
)
from optiinfra_tui.storage.history import (
    HEARTBEAT_STALE_AFTER as STALE_AFTER,
)
from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.recovery")

LOST = "lost"
# Huey pops a task before it runs it: a consumer killed in between, or a queue outage while
# Huey re-schedules a retry, drops the task. Overdue this long and absent from the queue
# means lost.
LOST_AFTER = timedelta(seconds=60)


def consumer_of(worker: str | None) -> str:
    """'host:pid:Worker-1' -> 'host:pid'."""
    return (worker or "").rsplit(":", 1)[0]


def orphaned_runs(now: datetime | None = None) -> list[CollectionRun]:
    """Runs marked running by a consumer with no fresh heartbeat."""
    now = now or utcnow()
    live = {hb.consumer_id for hb in WorkerHeartbeat.select(WorkerHeartbeat.consumer_id)
            .where(WorkerHeartbeat.beat_at >= now - STALE_AFTER)}
    candidates = CollectionRun.select().where(CollectionRun.status == RUNNING,
                                              CollectionRun.started_at < now - STALE_AFTER)
    return [r for r in candidates if consumer_of(r.worker) not in live]


def take_over(run: CollectionRun, now: datetime | None = None) -> str | None:
    """Move one orphan to its next attempt (or fail it); None if another consumer got there first."""
    now = now or utcnow()
    message = (f"The consumer running attempt {run.attempt} ({consumer_of(run.worker)}) "
               "stopped without finishing it.")
    final = run.attempt >= run.max_attempts
    with db.atomic():
        won = (CollectionRun.update(
            status=FAILED if final else RETRYING, error_kind=LOST,
            error_message=message + (" No attempts left." if final else " Re-enqueued."),
            next_attempt_at=None if final else now, finished_at=now if final else None)
            .where(CollectionRun.id == run.id, CollectionRun.status == RUNNING,
                   CollectionRun.attempt == run.attempt)
            .execute())
        if not won:
            return None
        RunAttempt.update(status=FAILED, finished_at=now, error_kind=LOST,
                          error_message=message).where(
            RunAttempt.run_id == run.id, RunAttempt.attempt == run.attempt).execute()
    return FAILED if final else RETRYING


def recover(rt: Runtime, now: datetime | None = None) -> list[int]:
    """Re-enqueue every orphan this consumer wins; returns their run ids."""
    recovered = []
    for run in orphaned_runs(now):
        outcome = take_over(run, now)
        if outcome == RETRYING:
            task = rt.tasks.collect_data_task.s(run.customer_id, run.provider, list(run.types),
                                                run_id=run.id, trigger="recovery")
            CollectionRun.update(task_id=task.id).where(CollectionRun.id == run.id).execute()
            try:
                rt.huey.enqueue(task)
            except Exception:
                # Put it back as it was, so the next tick (here or elsewhere) tries again.
                CollectionRun.update(status=RUNNING, error_kind=None, error_message=None,
                                     next_attempt_at=None).where(
                    CollectionRun.id == run.id).execute()
                raise
            log.warning("run %d: its consumer %s stopped mid-task; re-enqueued as attempt %d",
                        run.id, consumer_of(run.worker), run.attempt + 1)
            recovered.append(run.id)
        elif outcome == FAILED:
            log.warning("run %d: its consumer %s stopped mid-task and no attempts are left",
                        run.id, consumer_of(run.worker))
    return recovered


def lost_runs(rt: Runtime, now: datetime | None = None) -> list[CollectionRun]:
    """Queued or retrying runs overdue by LOST_AFTER whose task the queue no longer holds."""
    cutoff = (now or utcnow()) - LOST_AFTER
    candidates = list(CollectionRun.select().where(
        ((CollectionRun.status == QUEUED) & (CollectionRun.queued_at < cutoff))
        | ((CollectionRun.status == RETRYING) & (CollectionRun.next_attempt_at < cutoff))))
    if not candidates:
        return []
    waiting = {t.id for t in rt.huey.pending()} | {t.id for t in rt.huey.scheduled()}
    return [r for r in candidates if r.task_id not in waiting]


def requeue_lost(rt: Runtime, now: datetime | None = None) -> list[int]:
    """Enqueue a new task for every lost run this consumer wins; returns their run ids."""
    requeued = []
    for run in lost_runs(rt, now):
        task = rt.tasks.collect_data_task.s(run.customer_id, run.provider, list(run.types),
                                            run_id=run.id, trigger="recovery")
        same_task = (CollectionRun.task_id.is_null() if run.task_id is None
                     else CollectionRun.task_id == run.task_id)
        # Guarded on the old task id: of several consumers noticing, one re-enqueues.
        if not (CollectionRun.update(task_id=task.id)
                .where(CollectionRun.id == run.id, CollectionRun.status == run.status, same_task)
                .execute()):
            continue
        try:
            rt.huey.enqueue(task)
        except Exception:
            CollectionRun.update(task_id=run.task_id).where(
                CollectionRun.id == run.id, CollectionRun.task_id == task.id).execute()
            raise
        log.warning("run %d: %s but its task was lost; re-enqueued", run.id, run.status)
        requeued.append(run.id)
    return requeued
