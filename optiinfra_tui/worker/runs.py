"""A collection run's lifecycle in the history store: queued, each attempt, and its end.

Every state change is one short transaction, so any reader (CLI, dashboard, another host)
sees the truth as soon as it is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from peewee import PostgresqlDatabase, __exception_wrapper__, fn

from optiinfra_tui.settings import ordered_types
from optiinfra_tui.storage.group_commit import Part
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
    group_writer,
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
# most of a task's CPU. A data-modifying WITH is one atomic statement. A worker's claims and
# ends go through the process's group-commit writer (storage/group_commit.py): the
# statements of many tasks share one transaction and one round trip.
_PG_INSERT = """
INSERT INTO collection_runs (task_id, customer_id, provider, data_types, "trigger", status,
    attempt, max_attempts, metrics_collected, queued_at, retry_of, schedule) VALUES """
_PG_ROW = "(%s, %s, %s, %s, %s, %s, 0, %s, 0, %s, %s, %s)"
_PG_CREATE = _PG_INSERT + _PG_ROW + " RETURNING id"

# The columns of a claimed run, in the model's order: rows come back as plain tuples.
_RUN_FIELDS = [f.name for f in CollectionRun._meta.sorted_fields]
_RUN_COLUMNS = ", ".join(f'r."{f.column_name}"' for f in CollectionRun._meta.sorted_fields)
# Each statement below is planned once per connection, maybe on an empty table: the ids' own
# ANY keeps it on the primary key (a join with the rows alone could go through another index;
# through the status index, a claim would visit every queued run and every dead version of
# one), and the claim's status test is one no index answers.
_BY_ID = "r.id = ANY(ARRAY(SELECT id FROM {rows}))"

# A worker's claims of runs: one row back per run claimed (the id first).
_CLAIM = Part("claim", (("id", "int"), ("worker", "text"), ("started_at", "timestamp")), f"""
{{name}} AS (
    UPDATE collection_runs r SET status = '{RUNNING}', attempt = r.attempt + 1,
        started_at = c.started_at, worker = c.worker, next_attempt_at = NULL
    FROM {{rows}} c WHERE {_BY_ID} AND r.id = c.id
        AND coalesce(r.status, '') IN ('{QUEUED}', '{RETRYING}')
    RETURNING {_RUN_COLUMNS}),
{{name}}_attempt AS (
    INSERT INTO run_attempts (run_id, attempt, status, worker, started_at, "rows")
    SELECT id, attempt, status, worker, started_at, 0 FROM {{name}})""",
              table="collection_runs", returns=True)

# The end of an attempt and of its run.
_FINISH = Part("finish", (
    ("id", "int"), ("attempt", "int"), ("status", "text"), ("ended_at", "timestamp"),
    ("n_rows", "int"), ("kind", "text"), ("message", "text"), ("attempt_ms", "int"),
    ("total_rows", "int"), ("total_ms", "int")), f"""
{{name}}_attempt AS (
    UPDATE run_attempts a SET status = f.status, finished_at = f.ended_at, "rows" = f.n_rows,
        error_kind = f.kind, error_message = f.message, duration_ms = f.attempt_ms
    FROM {{rows}} f WHERE a.run_id = ANY(ARRAY(SELECT id FROM {{rows}}))
        AND a.run_id = f.id AND a.attempt = f.attempt),
{{name}} AS (
    UPDATE collection_runs r SET status = f.status, finished_at = f.ended_at,
        metrics_collected = f.total_rows, error_kind = f.kind, error_message = f.message,
        next_attempt_at = NULL, duration_ms = f.total_ms
    FROM {{rows}} f WHERE {_BY_ID} AND r.id = f.id)""", table="collection_runs")

_ADD_REQUESTS = Part("add_requests", (("id", "int"), ("n", "int")), f"""
{{name}} AS (
    UPDATE collection_runs r SET requests = r.requests + q.n
    FROM {{rows}} q WHERE {_BY_ID} AND r.id = q.id)""", table="collection_runs")


def _run_of(data: dict) -> CollectionRun:
    """A run from its column values, as peewee builds one from a row (setting each field
    through the model's constructor is most of the cost of a run on the hot path)."""
    run = CollectionRun(__no_default__=1)
    run.__data__ = data
    return run


def _on_postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


def create_run(customer_id: str, provider: str, data_types: Iterable[str], trigger: str,
               max_attempts: int, retry_of: int | None = None,
               schedule: str | None = None, task_id: str | None = None) -> CollectionRun:
    """Write a run as `queued`: this happens before its task is enqueued."""
    types, now = ",".join(data_types), utcnow()
    if _on_postgres():
        run_id = db.execute_sql(_PG_CREATE, (
            task_id, customer_id, provider, types, trigger, QUEUED, max_attempts, now,
            retry_of, schedule)).fetchone()[0]
        return _run_of(dict(
            id=run_id, task_id=task_id, customer_id=customer_id, provider=provider,
            data_types=types, trigger=trigger, status=QUEUED, attempt=0,
            max_attempts=max_attempts, metrics_collected=0, error_kind=None,
            error_message=None, queued_at=now, started_at=None, finished_at=None,
            duration_ms=None, worker=None, next_attempt_at=None, retry_of=retry_of,
            schedule=schedule, requests=0))
    return CollectionRun.create(
        customer_id=customer_id, provider=provider, data_types=types, trigger=trigger,
        status=QUEUED, max_attempts=max_attempts, retry_of=retry_of, schedule=schedule,
        queued_at=now, task_id=task_id)


def create_runs(customer_ids: list[str], provider: str, data_types: Iterable[str],
                trigger: str, max_attempts: int, task_ids: list[str],
                schedule: str | None = None) -> list[CollectionRun]:
    """Write one `queued` run per customer (each with its task's id), in one statement."""
    types, now = ",".join(data_types), utcnow()
    values = [(task_id, customer_id, provider, types, trigger, QUEUED, max_attempts, now, None,
               schedule) for customer_id, task_id in zip(customer_ids, task_ids, strict=True)]
    if not _on_postgres():
        with db.atomic():
            return [create_run(c, provider, data_types, trigger, max_attempts,
                               schedule=schedule, task_id=t)
                    for c, t in zip(customer_ids, task_ids, strict=True)]
    cursor = db.cursor()
    sql = (_PG_INSERT + ",".join(cursor.mogrify(_PG_ROW, v).decode() for v in values)
           + " RETURNING id, task_id")
    with __exception_wrapper__:
        cursor.execute(sql)
        ids = {task_id: run_id for run_id, task_id in cursor.fetchall()}
    return [_run_of(dict(
        id=ids[v[0]], task_id=v[0], customer_id=v[1], provider=provider, data_types=types,
        trigger=trigger, status=QUEUED, attempt=0, max_attempts=max_attempts,
        metrics_collected=0, error_kind=None, error_message=None, queued_at=now,
        started_at=None, finished_at=None, duration_ms=None, worker=None, next_attempt_at=None,
        retry_of=None, schedule=schedule, requests=0)) for v in values]


def attach_task(run_id: int, task_id: str) -> None:
    CollectionRun.update(task_id=task_id).where(CollectionRun.id == run_id).execute()


def delete_run(run_id: int) -> None:
    """Undo a run whose task never reached the queue, so nothing half-done is recorded."""
    with db.atomic():
        RunAttempt.delete().where(RunAttempt.run_id == run_id).execute()
        CollectionRun.delete().where(CollectionRun.id == run_id).execute()


def delete_runs(run_ids: list[int]) -> None:
    """Undo runs whose tasks never reached the queue."""
    with db.atomic():
        RunAttempt.delete().where(RunAttempt.run_id.in_(run_ids)).execute()
        CollectionRun.delete().where(CollectionRun.id.in_(run_ids)).execute()


def get_run(run_id: int) -> CollectionRun | None:
    return CollectionRun.get_or_none(CollectionRun.id == run_id)


def start_attempt(run_id: int, worker: str) -> CollectionRun | None:
    """Mark the next attempt running; None when the run is gone, canceled or already over."""
    now = utcnow()
    writer = group_writer()
    if writer is not None:
        row = writer.query(_CLAIM, (run_id, worker, now))
        return None if row is None else _run_of(dict(zip(_RUN_FIELDS, row, strict=True)))
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


def finish_success(run: CollectionRun, rows: int, wait: bool = True) -> None:
    """Record the attempt's success; without `wait`, committed with this process's next batch
    of history writes (a few ms later, before the worker's next claim is answered)."""
    _finish(run, SUCCESS, rows, None, None, wait)


def finish_failure(run: CollectionRun, kind: str, message: str, rows: int = 0,
                   status: str = FAILED, wait: bool = True) -> None:
    """Record the run's end in failure (or `status`); `wait` as for finish_success."""
    _finish(run, status, rows, kind, message, wait)


def _finish(run: CollectionRun, status: str, rows: int, kind: str | None,
            message: str | None, wait: bool) -> None:
    # Retried until the database takes it, either way: a run's end must survive an outage.
    what = f"run {run.id} {status}"
    writer = group_writer()
    if writer is None:
        durable(_finish_sqlite, run, status, rows, kind, message, what=what)
        return
    now = utcnow()
    started = run.started_at or now
    writer.write(_FINISH, (
        run.id, run.attempt, status, now, rows, kind, message,
        int((now - started).total_seconds() * 1000), run.metrics_collected + rows,
        _total_duration_ms(run, now)), what=what, wait=wait)


def _finish_sqlite(run: CollectionRun, status: str, rows: int, kind: str | None,
                   message: str | None) -> None:
    now = utcnow()
    total_rows = run.metrics_collected + rows
    with db.atomic():
        _finish_attempt(run, status, rows, kind, message, now)
        CollectionRun.update(
            status=status, finished_at=now, metrics_collected=total_rows, error_kind=kind,
            error_message=message, next_attempt_at=None,
            duration_ms=_total_duration_ms(run, now),
        ).where(CollectionRun.id == run.id).execute()


def add_requests(run_id: int, count: int) -> None:
    """Add an attempt's provider requests to its run's count."""
    if not count:
        return
    writer = group_writer()
    if writer is not None:
        writer.write(_ADD_REQUESTS, (run_id, count), what=f"run {run_id} requests")
        return
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
