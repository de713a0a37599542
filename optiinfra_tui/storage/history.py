"""The history store: collection runs, their attempts, consumer heartbeats and schedule slots.

One peewee model set on SQLite (embedded) or PostgreSQL (distributed), chosen by URL.
The schema carries a version; `migrate()` applies the forward steps a database lacks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import peewee as pw
from playhouse.db_url import parse as parse_db_url

from optiinfra_tui.datadir import create_file, make_dir
from optiinfra_tui.errors import BackendUnavailable, ConfigError
from optiinfra_tui.storage import group_commit
from optiinfra_tui.text import first_line, safe_url

log = logging.getLogger("optiinfra.history")

db = pw.DatabaseProxy()

# Run states; the last three are final.
QUEUED, RUNNING, RETRYING, SUCCESS, FAILED, CANCELED = (
    "queued", "running", "retrying", "success", "failed", "canceled")
STATUSES = (QUEUED, RUNNING, RETRYING, SUCCESS, FAILED, CANCELED)
FINAL_STATUSES = (SUCCESS, FAILED, CANCELED)
# A consumer that hasn't beaten for this long is gone (it beats every 3 s).
HEARTBEAT_STALE_AFTER = timedelta(seconds=15)


def utcnow() -> datetime:
    """Naive UTC: what every timestamp column holds, on SQLite and PostgreSQL alike."""
    return datetime.now(UTC).replace(tzinfo=None)


def minute_sql(column: str, database: pw.Database) -> str:
    """SQL for the column's time cut to its minute, on SQLite or PostgreSQL."""
    if isinstance(database, pw.PostgresqlDatabase):
        return f"date_trunc('minute', {column})"
    return f"strftime('%Y-%m-%d %H:%M:00', {column})"


def as_datetime(value: datetime | str) -> datetime:
    """A computed time column's value as a datetime: SQLite answers it as text."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


class BaseModel(pw.Model):
    class Meta:
        database = db


class CollectionRun(BaseModel):
    id = pw.AutoField()
    task_id = pw.CharField(max_length=64, null=True, index=True)
    customer_id = pw.CharField(max_length=64)
    provider = pw.CharField(max_length=32)
    data_types = pw.CharField(max_length=128)  # comma-separated, e.g. "cost,resource"
    trigger = pw.CharField(max_length=16)
    status = pw.CharField(max_length=16)
    attempt = pw.IntegerField(default=0)
    max_attempts = pw.IntegerField(default=1)
    metrics_collected = pw.IntegerField(default=0)
    error_kind = pw.CharField(max_length=32, null=True)
    error_message = pw.TextField(null=True)
    queued_at = pw.DateTimeField(default=utcnow)
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    duration_ms = pw.IntegerField(null=True)
    worker = pw.CharField(max_length=255, null=True)
    next_attempt_at = pw.DateTimeField(null=True)
    retry_of = pw.IntegerField(null=True)
    schedule = pw.CharField(max_length=64, null=True)
    # Requests sent to the provider over all attempts (some cost APIs bill each one).
    # A database default too: the PostgreSQL fast path inserts runs without naming it.
    requests = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])

    class Meta:
        table_name = "collection_runs"
        indexes = (
            (("status", "id"), False),
            (("provider", "id"), False),
            (("customer_id", "id"), False),
            (("finished_at",), False),
        )

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(t for t in self.data_types.split(",") if t)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class RunAttempt(BaseModel):
    """One try of a run: what a run detail screen lists."""

    id = pw.AutoField()
    run_id = pw.IntegerField()  # looked up through the unique (run_id, attempt) index
    attempt = pw.IntegerField()
    status = pw.CharField(max_length=16)
    worker = pw.CharField(max_length=255, null=True)
    started_at = pw.DateTimeField(default=utcnow)
    finished_at = pw.DateTimeField(null=True)
    duration_ms = pw.IntegerField(null=True)
    rows = pw.IntegerField(default=0)
    error_kind = pw.CharField(max_length=32, null=True)
    error_message = pw.TextField(null=True)

    class Meta:
        table_name = "run_attempts"
        indexes = ((("run_id", "attempt"), True),)


class WorkerHeartbeat(BaseModel):
    """One row per consumer process, rewritten every few seconds while it lives."""

    consumer_id = pw.CharField(max_length=255, primary_key=True)  # host:pid
    host = pw.CharField(max_length=255)
    pid = pw.IntegerField()
    kind = pw.CharField(max_length=32)  # dashboard | headless | huey_consumer | embedded
    threads = pw.IntegerField(default=0)
    processed = pw.IntegerField(default=0)
    failed = pw.IntegerField(default=0)
    started_at = pw.DateTimeField(default=utcnow)
    beat_at = pw.DateTimeField(default=utcnow, index=True)
    state = pw.TextField(default="[]")  # JSON: one entry per worker thread

    class Meta:
        table_name = "worker_heartbeats"


class ScheduleSlot(BaseModel):
    """A claimed schedule slot: the unique key is how consumers agree who runs it."""

    id = pw.AutoField()
    schedule = pw.CharField(max_length=64)
    slot = pw.DateTimeField()
    claimed_by = pw.CharField(max_length=255)
    claimed_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "schedule_slots"
        indexes = ((("schedule", "slot"), True),)


class ScheduleState(BaseModel):
    schedule = pw.CharField(max_length=64, primary_key=True)
    paused = pw.BooleanField(default=False)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "schedule_state"


class BackendHealth(BaseModel):
    """The last health check of each backend and provider, for `status` and the header."""

    name = pw.CharField(max_length=64, primary_key=True)
    ok = pw.BooleanField()
    latency_ms = pw.FloatField(null=True)
    message = pw.TextField(default="")
    checked_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "backend_health"


class AlertState(BaseModel):
    """Whether one condition of one alert is firing. A conditional UPDATE of this row (or its
    unique INSERT) is the claim that makes one consumer of all send each alert and recovery."""

    id = pw.AutoField()
    alert = pw.CharField(max_length=64)  # the [[alerts]] entry's name
    condition = pw.CharField(max_length=255)  # failures:<provider>:<customer> | missed:<schedule> | consumers
    active = pw.BooleanField(default=False)
    # What identifies this occurrence, sortable as text within one condition (a run id padded
    # with zeros, a slot's or a heartbeat's ISO time): an occurrence never fires twice.
    episode = pw.CharField(max_length=64)
    summary = pw.TextField(default="")
    since = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "alert_states"
        indexes = ((("alert", "condition"), True),)


class AlertMessage(BaseModel):
    """A webhook message to send, or sent: the outbox that any consumer delivers from."""

    id = pw.AutoField()
    alert = pw.CharField(max_length=64)
    condition = pw.CharField(max_length=255)
    event = pw.CharField(max_length=16)  # firing | resolved
    body = pw.TextField()  # the request body, as sent (never the URL)
    created_at = pw.DateTimeField(default=utcnow)
    # Not sent before this; a sender moves it ahead while it holds the message (its lease).
    due_at = pw.DateTimeField(default=utcnow)
    attempts = pw.IntegerField(default=0)
    sent_at = pw.DateTimeField(null=True)
    given_up = pw.BooleanField(default=False)
    last_error = pw.TextField(null=True)
    sent_by = pw.CharField(max_length=255, null=True)

    class Meta:
        table_name = "alert_messages"
        indexes = ((("alert", "sent_at", "id"), False),)


class SchemaVersion(BaseModel):
    version = pw.IntegerField()

    class Meta:
        table_name = "schema_version"


ALL_MODELS = (CollectionRun, RunAttempt, WorkerHeartbeat, ScheduleSlot, ScheduleState,
              BackendHealth)


def _v1(database: pw.Database) -> None:
    database.create_tables(ALL_MODELS, safe=True)


def _v2(database: pw.Database) -> None:
    # A database made at version 1 by this code already has the column (create_tables above).
    if "requests" not in {c.name for c in database.get_columns("collection_runs")}:
        from playhouse.migrate import SchemaMigrator
        from playhouse.migrate import migrate as run_steps

        run_steps(SchemaMigrator.from_database(database).add_column(
            "collection_runs", "requests", CollectionRun.requests))


def _v3(database: pw.Database) -> None:
    database.create_tables([AlertState, AlertMessage], safe=True)


# Version 4: the indexes ten million runs need (bench/scale_history.py measures each read).
# Added: the retries of a run, which its detail lists (a scan of every run without it).
# Dropped: queued_at's (no query reads it: recovery's lost runs go by status) and the attempts'
# run_id (the unique (run_id, attempt) index serves every lookup by run): each cost every write.
INDEXES_ADDED = {"collectionrun_retry_of": "collection_runs (retry_of) WHERE retry_of IS NOT NULL"}
INDEXES_DROPPED = {"collectionrun_queued_at": "collection_runs (queued_at)",
                   "runattempt_run_id": "run_attempts (run_id)"}


def _v4(database: pw.Database) -> None:
    pg = isinstance(database, pw.PostgresqlDatabase)
    online = "CONCURRENTLY " if pg else ""
    for name, target in INDEXES_ADDED.items():
        if pg and _invalid_index(database, name):
            # An earlier try, interrupted, left it half-built: IF NOT EXISTS would keep it.
            database.execute_sql(f"DROP INDEX CONCURRENTLY {name}")
        database.execute_sql(f"CREATE INDEX {online}IF NOT EXISTS {name} ON {target}")
    for name in INDEXES_DROPPED:
        database.execute_sql(f"DROP INDEX {online}IF EXISTS {name}")


def _invalid_index(database: pw.Database, name: str) -> bool:
    return bool(database.execute_sql(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = %s AND NOT i.indisvalid", (name,)).fetchone())


# Forward steps: version -> function. Append; never edit a released step.
MIGRATIONS = {1: _v1, 2: _v2, 3: _v3, 4: _v4}
# Steps that only build or drop indexes: on PostgreSQL outside a transaction (CONCURRENTLY).
INDEXES_STEP = 4
ONLINE_STEPS = frozenset({INDEXES_STEP})
SCHEMA_VERSION = max(MIGRATIONS)

_lock = threading.Lock()
_current_url: str | None = None


def connect(url: str) -> pw.Database:
    """Point the models at the database at `url` and bring its schema up to date."""
    global _current_url
    current = db.obj
    if _current_url == url and current is not None:  # every task asks: no lock for the answer
        return current
    with _lock:
        if _current_url == url and db.obj is not None:
            return db.obj
        database = _open(url)
        if db.obj is not None:
            group_commit.stop_writer()  # what it holds belongs to the old database
            db.obj.close()
        db.initialize(database)
        try:
            migrate(database)
        except pw.OperationalError as exc:
            raise unreachable(url, exc) from None
        _current_url = url
        return database


def unreachable(url: str, exc: BaseException) -> BackendUnavailable:
    """The error for a history database that can't be reached: where (no password), what
    failed, and what to check."""
    return BackendUnavailable(
        f"The history database ({safe_url(url)}) is unreachable: "
        f"{first_line(exc) or type(exc).__name__}. Check DATABASE_URL and that the server is "
        "running.")


class _Postgres(pw.PostgresqlDatabase):
    """PostgreSQL whose threads reconnect after a server restart.

    psycopg2 answers 'connection already closed' on a dropped connection forever; peewee
    keeps handing it out, so without this a consumer never recovers from an outage.
    """

    def cursor(self, *args, **kwargs):
        conn = None if self.is_closed() else self._state.conn
        if conn is not None and conn.closed and not self.in_transaction():
            self._state.reset()  # forget it: cursor() below opens a new connection
        return super().cursor(*args, **kwargs)


def _open(url: str) -> pw.Database:
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        path = Path(url[len("sqlite:///"):])
        try:
            make_dir(path.parent)
            create_file(path)
        except OSError as exc:
            raise ConfigError(f"DATABASE_URL: can't create {path.parent}: {exc.strerror}. "
                              "Set OPTIINFRA_HOME or DATABASE_URL to a writable place.") from None
        # WAL lets the dashboard read while workers write; busy_timeout rides out short locks.
        # BEGIN IMMEDIATE: a transaction that reads then writes would otherwise fail at once
        # with "database is locked" when another connection wrote in between.
        return pw.SqliteDatabase(str(path), lock_type="IMMEDIATE", pragmas={
            "journal_mode": "wal", "busy_timeout": 10000, "synchronous": "normal",
            "foreign_keys": 1})
    if scheme in ("postgres", "postgresql"):
        return _Postgres(**parse_db_url(url), autorollback=True, connect_timeout=5)
    raise ConfigError(f"DATABASE_URL scheme {scheme!r} is not supported; use sqlite:/// or postgresql://.")


def migrate(database: pw.Database) -> int:
    """Apply every forward step above the stored version; safe when consumers start together.

    SQLite: one transaction (BEGIN IMMEDIATE makes the migrators take turns). PostgreSQL: a
    session advisory lock makes them take turns, each step commits with its version, and the
    index steps run outside any transaction, so that CREATE INDEX CONCURRENTLY lets every
    worker write while a populated table is indexed.
    """
    if not isinstance(database, pw.PostgresqlDatabase):
        with database.atomic():
            return _apply_steps(database)
    if database.table_exists(SchemaVersion._meta.table_name) and \
            _stored_version() >= max(MIGRATIONS):
        return _stored_version()
    with _postgres_migration_lock(database):
        return _apply_steps(database)


def _stored_version() -> int:
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def _apply_steps(database: pw.Database) -> int:
    with database.atomic():
        database.create_tables([SchemaVersion], safe=True)
    current = _stored_version()
    for version in sorted(v for v in MIGRATIONS if v > current):
        online = version in ONLINE_STEPS and isinstance(database, pw.PostgresqlDatabase)
        with nullcontext() if online else database.atomic():
            MIGRATIONS[version](database)
        with database.atomic():
            SchemaVersion.delete().execute()
            SchemaVersion.create(version=version)
        log.info("history schema migrated to version %d", version)
        current = version
    return current


def group_writer() -> group_commit.GroupCommit | None:
    """This process's group-commit writer (PostgreSQL); None on SQLite, where every write is
    a local transaction already."""
    database = db.obj
    if isinstance(database, pw.PostgresqlDatabase):
        return group_commit.writer_for(database)
    return None


def flush_writes(timeout: float | None = None) -> bool:
    """Wait until this process's queued history writes are committed; False on timeout."""
    return group_commit.flush(timeout)


@contextmanager
def _postgres_migration_lock(database: pw.Database) -> Iterator[None]:
    # Tried, not waited for: a backend blocked in pg_advisory_lock holds a snapshot, which
    # CREATE INDEX CONCURRENTLY in the lock's holder would wait for in turn.
    waiting = False
    while not database.execute_sql("SELECT pg_try_advisory_lock(715517)").fetchone()[0]:
        if not waiting:
            log.info("history schema: another process is migrating it; waiting")
            waiting = True
        time.sleep(0.2)
    try:
        yield
    finally:
        database.execute_sql("SELECT pg_advisory_unlock(715517)")


def close_connection() -> None:
    """Close this thread's connection: short-lived threads would otherwise leak theirs."""
    try:
        if db.obj is not None and not db.is_closed():
            db.close()
    except Exception:
        pass


def ping() -> float:
    """Seconds for one round trip to the history database."""
    start = time.perf_counter()
    db.execute_sql("SELECT 1").fetchone()
    return time.perf_counter() - start


# Errors that mean "the database is unreachable right now", as opposed to a bug in a query.
UNAVAILABLE = (pw.OperationalError, pw.InterfaceError)

DURABLE_GIVE_UP_AFTER = 24 * 3600.0


def durable(fn, *args, what: str = "history write", give_up_after: float = DURABLE_GIVE_UP_AFTER,
            **kwargs):
    """Call `fn` until the database takes it: a run's final state must survive an outage.

    Logs one line when the database goes away and one when the write finally lands.
    """
    delay, waited, warned = 0.2, 0.0, False
    while True:
        try:
            result = fn(*args, **kwargs)
        except UNAVAILABLE as exc:
            if waited >= give_up_after:
                raise
            if not warned:
                log.warning("history database unavailable during %s (%s); retrying until it "
                            "returns", what, (first_line(exc) or type(exc).__name__))
                warned = True
            try:
                db.close()  # drop the dead connection so the next try reconnects
            except Exception:
                pass
            time.sleep(delay)
            waited += delay
            delay = min(delay * 2, 5.0)
            continue
        if warned:
            log.info("history database back: %s written after %.0f s", what, waited)
        return result
