"""A collection run's lifecycle in the history store: queued, each attempt, and its end.

Every state change is one short transaction, so any reader (CLI, dashboard, another host)
sees the truth as soon as it is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from peewee import PostgresqlDatabase, fn

from optiinfra_tui.settings import ordered_types
from optiinfra_tui.storage.history import (
    CANCELED,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    RETRYING,
    RUNNING,
    SUCCESS,
    CollectionRun,
    RunAttempt,
    db,
    durable,
    utcnow,
)


@dataclass(frozen=True)
class RunRow:
    """An immutable copy of a run: safe to hand from a thread to the UI, to compare, and to
    print as JSON (`collect --json`, `history --json`)."""

    id: int
    task_id: str | None
    status: str
    customer_id: str
    provider: str
    data_types: str
    trigger: str
    attempt: int
    max_attempts: int
    rows: int
    requests: int
    error_kind: str | None
    error_message: str | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    worker: str | None
    next_attempt_at: datetime | None
    retry_of: int | None

    @classmethod
    def of(cls, run: CollectionRun) -> RunRow:
        return cls(run.id, run.task_id, run.status, run.customer_id, run.provider,
                   run.data_types, run.trigger, run.attempt, run.max_attempts,
                   run.metrics_collected, run.requests, run.error_kind, run.error_message,
                   run.queued_at, run.started_at, run.finished_at, run.duration_ms, run.worker,
                   run.next_attempt_at, run.retry_of)

    def to_json(self) -> dict:
        """The run as a JSON object (data types as a list, in the provider's order)."""
        doc = asdict(self)
        doc["data_types"] = list(ordered_types(self.provider, self.data_types))
        return doc


# The statements every task runs, on PostgreSQL written out: building them with peewee was
# most of a task's CPU. A data-modifying WITH is one atomic statement, so start and finish
# cost one round trip each instead of four (BEGIN, two statements, COMMIT).
_PG_CREATE = """
INSERT INTO collection_runs (task_id, customer_id, provider, data_types, "trigger", status,
    attempt, max_attempts, metrics_collected, queued_at, retry_of, schedule)
VALUES (%s, %s, %s, %s, %s, %s, 0, %s, 0, %s, %s, %s) RETURNING *"""

_PG_START = """
WITH claimed AS (
    UPDATE collection_runs SET status = %s, attempt = attempt + 1, started_at = %s,
        worker = %s, next_attempt_at = NULL
    WHERE id = %s AND status IN (%s, %s) RETURNING *),
attempt AS (
    INSERT INTO run_attempts (run_id, attempt, status, worker, started_at, "rows")
    SELECT id, attempt, status, worker, started_at, 0 FROM claimed)
SELECT * FROM claimed"""

_PG_FINISH = """
WITH attempt AS (
    UPDATE run_attempts SET status = %s, finished_at = %s, "rows" = %s, error_kind = %s,
        error_message = %s, duration_ms = %s
    WHERE run_id = %s AND attempt = %s)
UPDATE collection_runs SET status = %s, finished_at = %s, metrics_collected = %s,
    error_kind = %s, error_message = %s, next_attempt_at = NULL, duration_ms = %s
WHERE id = %s"""


def _on_postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


def create_run(customer_id: str, provider: str, data_types: Iterable[str], trigger: str,
               max_attempts: int, retry_of: int | None = None,
               schedule: str | None = None, task_id: str | None = None) -> CollectionRun:
    """Write a run as `queued`: this happens before its task is enqueued."""
    if _on_postgres():
        return list(CollectionRun.raw(
            _PG_CREATE, task_id, customer_id, provider, ",".join(data_types), trigger, QUEUED,
            max_attempts, utcnow(), retry_of, schedule))[0]
    return CollectionRun.create(
        customer_id=customer_id, provider=provider, data_types=",".join(data_types),
        trigger=trigger, status=QUEUED, max_attempts=max_attempts, retry_of=retry_of,
        schedule=schedule, queued_at=utcnow(), task_id=task_id)


def attach_task(run_id: int, task_id: str) -> None:
    CollectionRun.update(task_id=task_id).where(CollectionRun.id == run_id).execute()


def delete_run(run_id: int) -> None:
    """Undo a run whose task never reached the queue, so nothing half-done is recorded."""
    with db.atomic():
        RunAttempt.delete().where(RunAttempt.run_id == run_id).execute()
        CollectionRun.delete().where(CollectionRun.id == run_id).execute()


def get_run(run_id: int) -> CollectionRun | None:
    return CollectionRun.get_or_none(CollectionRun.id == run_id)


def start_attempt(run_id: int, worker: str) -> CollectionRun | None:
    """Mark the next attempt running; None when the run is gone, canceled or already over."""
    now = utcnow()
    if _on_postgres():
        claimed = list(CollectionRun.raw(_PG_START, RUNNING, now, worker, run_id, QUEUED,
                                         RETRYING))
        return claimed[0] if claimed else None
    with db.atomic():
        # One guarded UPDATE both checks and claims the run (two consumers racing for it
        # agree on a single winner) and returns it: every task pays for each round trip here.
        claimed = list(CollectionRun.update(status=RUNNING, attempt=CollectionRun.attempt + 1,
                                            started_at=now, worker=worker, next_attempt_at=None)
                       .where(CollectionRun.id == run_id,
                              CollectionRun.status.in_((QUEUED, RETRYING)))
                       .returning(CollectionRun).execute())
        if not claimed:
            return None
        run = claimed[0]
        RunAttempt.insert(run_id=run_id, attempt=run.attempt, status=RUNNING, worker=worker,
                          started_at=now).execute()
    return run


def _finish_attempt(run: CollectionRun, status: str, rows: int, kind: str | None,
                    message: str | None, now: datetime) -> None:
    started = run.started_at or now
    RunAttempt.update(status=status, finished_at=now, rows=rows, error_kind=kind,
                      error_message=message,
                      duration_ms=int((now - started).total_seconds() * 1000)).where(
        RunAttempt.run_id == run.id, RunAttempt.attempt == run.attempt).execute()


def finish_success(run: CollectionRun, rows: int) -> None:
    durable(_finish, run, SUCCESS, rows, None, None, what=f"run {run.id} success")


def finish_failure(run: CollectionRun, kind: str, message: str, rows: int = 0,
                   status: str = FAILED) -> None:
    durable(_finish, run, status, rows, kind, message, what=f"run {run.id} {status}")


def _finish(run: CollectionRun, status: str, rows: int, kind: str | None,
            message: str | None) -> None:
    now = utcnow()
    total_rows = run.metrics_collected + rows
    if _on_postgres():
        started = run.started_at or now
        db.execute_sql(_PG_FINISH, (
            status, now, rows, kind, message, int((now - started).total_seconds() * 1000),
            run.id, run.attempt,
            status, now, total_rows, kind, message, _total_duration_ms(run, now), run.id))
        return
    with db.atomic():
        _finish_attempt(run, status, rows, kind, message, now)
        CollectionRun.update(
            status=status, finished_at=now, metrics_collected=total_rows, error_kind=kind,
            error_message=message, next_attempt_at=None,
            duration_ms=_total_duration_ms(run, now),
        ).where(CollectionRun.id == run.id).execute()


def add_requests(run_id: int, count: int) -> None:
    """Add an attempt's provider requests to its run's count."""
    if count:
        durable(lambda: CollectionRun.update(requests=CollectionRun.requests + count)
                .where(CollectionRun.id == run_id).execute(), what=f"run {run_id} requests")


def schedule_retry(run: CollectionRun, kind: str, message: str, delay: float,
                   rows: int = 0) -> datetime:
    """Record a failed attempt that will be retried after `delay` seconds."""
    return durable(_schedule_retry, run, kind, message, delay, rows, what=f"run {run.id} retry")


def _schedule_retry(run: CollectionRun, kind: str, message: str, delay: float,
                    rows: int) -> datetime:
    now = utcnow()
    next_at = now + timedelta(seconds=delay)
    with db.atomic():
        _finish_attempt(run, RETRYING, rows, kind, message, now)
        CollectionRun.update(
            status=RETRYING, error_kind=kind, error_message=message, next_attempt_at=next_at,
            metrics_collected=run.metrics_collected + rows,
        ).where(CollectionRun.id == run.id).execute()
    return next_at


def cancel_run(run_id: int, message: str = "Revoked by the user before it ran.") -> bool:
    """Cancel a run that hasn't started (queued or waiting for a retry)."""
    now = utcnow()
    return bool(CollectionRun.update(
        status=CANCELED, finished_at=now, error_kind="canceled", error_message=message,
        next_attempt_at=None,
    ).where(CollectionRun.id == run_id,
            CollectionRun.status.in_((QUEUED, RETRYING))).execute())


def _total_duration_ms(run: CollectionRun, now: datetime) -> int:
    # From the first attempt's start, so retries count in the run's duration.
    if run.attempt == 1 and run.started_at is not None:
        return int((now - run.started_at).total_seconds() * 1000)
    first = (RunAttempt.select(RunAttempt.started_at).where(RunAttempt.run_id == run.id)
             .order_by(RunAttempt.attempt).first())
    start = first.started_at if first else (run.started_at or now)
    return int((now - start).total_seconds() * 1000)


def attempts(run_id: int) -> list[RunAttempt]:
    return list(RunAttempt.select().where(RunAttempt.run_id == run_id)
                .order_by(RunAttempt.attempt))


def list_runs(status: str | None = None, provider: str | None = None,
              customer_id: str | None = None, text: str | None = None,
              limit: int = 50, before_id: int | None = None) -> list[CollectionRun]:
    """Runs newest first, filtered; `before_id` pages by key, so deep pages stay fast."""
    q = CollectionRun.select()
    if status:
        q = q.where(CollectionRun.status == status)
    if provider:
        q = q.where(CollectionRun.provider == provider)
    if customer_id:
        q = q.where(CollectionRun.customer_id == customer_id)
    if text:
        like = f"%{text}%"
        q = q.where(CollectionRun.customer_id ** like | CollectionRun.error_message ** like
                    | CollectionRun.data_types ** like | CollectionRun.error_kind ** like
                    | CollectionRun.trigger ** like)
    if before_id is not None:
        q = q.where(CollectionRun.id < before_id)
    return list(q.order_by(CollectionRun.id.desc()).limit(limit))


def newest_run_id() -> int | None:
    """The highest run id: one step down the primary key, whatever the table's size."""
    return CollectionRun.select(fn.MAX(CollectionRun.id)).scalar()


def wait_for(run_id: int, timeout: float | None = None, poll: float = 0.2) -> CollectionRun:
    """Block until the run reaches a final state (or timeout); returns its last known row."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = CollectionRun.get_by_id(run_id)
        if run.status in FINAL_STATUSES:
            return run
        if deadline is not None and time.monotonic() >= deadline:
            return run
        time.sleep(poll)


__all__ = [
    "QUEUED", "RUNNING", "RETRYING", "SUCCESS", "FAILED", "CANCELED",
    "create_run", "attach_task", "delete_run", "get_run", "start_attempt", "finish_success",
    "finish_failure", "schedule_retry", "add_requests", "cancel_run", "attempts", "list_runs",
    "newest_run_id", "wait_for",
]


# Pruning deletes in short transactions, each holding its locks (on SQLite, the whole
# database's) for about PRUNE_BATCH_SECONDS: the batch is sized from the last one's time, so a
# worker's write waits that long at most, on a quiet host or a loaded one. After each batch
# the prune rests as long as the batch took (PRUNE_PAUSE at least): a writer waiting on
# SQLite's lock retries within its busy handler's sleep and finds the lock free, and on a busy
# host the prune takes at most half of a core.
PRUNE_BATCH = 250  # the first batch
PRUNE_BATCHES = (50, 5000)  # the smallest and largest batch
PRUNE_BATCH_SECONDS = 0.02
PRUNE_PAUSE = 0.02


def prune(keep_days: int, now: datetime | None = None, batch: int | None = None,
          between: Callable[[], object] | None = None) -> int:
    """Delete finished runs (and their attempts) older than `keep_days`, oldest first, in short
    transactions; returns runs deleted. `batch` fixes the runs per transaction (else sized to
    PRUNE_BATCH_SECONDS); `between` is called after each batch (the agent beats there)."""
    from optiinfra_tui.storage.history import ScheduleSlot, WorkerHeartbeat

    now = now or utcnow()
    cutoff = now - timedelta(days=keep_days)
    deleted, size = 0, batch or PRUNE_BATCH
    while True:
        started = time.monotonic()
        with db.atomic():
            ids = [i for (i,) in CollectionRun.select(CollectionRun.id)
                   .where(CollectionRun.finished_at < cutoff,
                          CollectionRun.status.in_(FINAL_STATUSES))
                   .order_by(CollectionRun.finished_at).limit(size).tuples()]
            if ids:
                RunAttempt.delete().where(RunAttempt.run_id.in_(ids)).execute()
                deleted += CollectionRun.delete().where(CollectionRun.id.in_(ids)).execute()
        if len(ids) < size:
            break
        took = time.monotonic() - started
        if batch is None:
            wanted = int(size * PRUNE_BATCH_SECONDS / max(took, 0.001))
            size = max(PRUNE_BATCHES[0], min(PRUNE_BATCHES[1], wanted, size * 2))
        if between is not None:
            between()
        time.sleep(max(PRUNE_PAUSE, took))
    with db.atomic():
        ScheduleSlot.delete().where(ScheduleSlot.slot < cutoff).execute()
        WorkerHeartbeat.delete().where(WorkerHeartbeat.beat_at < now - timedelta(days=1)).execute()
    return deleted
