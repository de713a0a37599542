"""Group commit for the history store on PostgreSQL: one thread per process writes the
statements of many tasks in one transaction and one round trip.

A worker task writes its run three times (the attempt's claim, the provider check, the end).
Written one by one, each is a transaction and a round trip, and PostgreSQL plans each
afresh. Here every thread hands its statements to one writer, which sends whatever has
gathered as one multi-statement query (PostgreSQL runs it as one transaction) as soon as
the previous one returns: idle, a statement goes at once; busy, the statements of many tasks
share a commit. Statements are prepared once per connection, and the claims of several runs
in one batch run as one statement over arrays.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import peewee as pw

from optiinfra_tui.text import first_line

log = logging.getLogger("optiinfra.history")

UNAVAILABLE = (pw.OperationalError, pw.InterfaceError)
RETRY_FIRST, RETRY_MAX = 0.2, 5.0  # back-off while the database is unreachable (s)
# What PostgreSQL answers when a prepared statement went missing or exists twice: a pooler
# (pgbouncer in transaction mode) that shares server sessions between clients.
PREPARED_ERRORS = ("26000", "42P05")


@dataclass(frozen=True)
class Statement:
    """A statement the writer runs, prepared as `name` on its connection (`%s` placeholders).

    `merged`: the calls of one batch run as one execution over arrays, one per column of a
    call's values, returning rows; each row goes to the call whose key (values[0]) is its
    first column.
    """

    name: str
    sql: str
    merged: bool = False

    def prepare(self) -> str:
        parts = self.sql.split("%s")
        return f"PREPARE {self.name} AS " + "".join(
            p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))

    def execute(self) -> str:
        return f"EXECUTE {self.name}({', '.join(['%s'] * self.sql.count('%s'))})"


class Ticket:
    """A submitted statement: `wait()` blocks until it is committed, or re-raises its failure.

    A bare lock, held until resolved: cheaper than an Event on a path every task takes."""

    __slots__ = ("_error", "_latch", "_result")

    def __init__(self) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._result = None
        self._error: BaseException | None = None

    def resolve(self, result=None, error: BaseException | None = None) -> None:
        self._result, self._error = result, error
        self._latch.release()

    def settled(self, timeout: float | None = None) -> bool:
        """Wait until resolved; False on timeout."""
        if not self._latch.acquire(timeout=-1 if timeout is None else timeout):
            return False
        self._latch.release()  # for any other waiter
        return True

    def wait(self, timeout: float | None = None):
        if not self.settled(timeout):
            raise TimeoutError("the history write is still waiting for the database")
        if self._error is not None:
            raise self._error
        return self._result


@dataclass
class _Op:
    statement: Statement
    params: Sequence
    what: str
    waited: bool  # someone blocks on it: no lingering
    dedupe: Hashable | None = None  # a later write with the same key makes this one moot
    ticket: Ticket = field(default_factory=Ticket)


class GroupCommit:
    """The writer thread of one process and one PostgreSQL database."""

    def __init__(self, database: pw.Database, linger: float = 0.002) -> None:
        self.database = database
        # How long writes nobody waits for may wait for company (a task's end for the next
        # task's claim); a waited-for statement flushes at once.
        self.linger = linger
        self.prepared = True  # off for good once a pooler shows it can't keep them
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[_Op] = []
        self._sleeping = False  # the thread waits for a statement (any will do)
        self._lingering = False  # it waits for company (only a waited-for statement ends it)
        self._flushing = 0
        self._stopping = False
        self._conn = None  # the connection the statements below are prepared on
        self._ready: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="HistoryWriter", daemon=True)
        self._thread.start()

    # --- submitting -----------------------------------------------------------------------

    def write(self, statement: Statement, params: Sequence, *, what: str = "history write",
              dedupe: Hashable | None = None, wait: bool = True) -> None:
        """Run `statement` in a coming batch, after every write submitted before it.

        With `wait`, return once it is committed. Either way it is retried through an outage
        until the database takes it, as `history.durable` does.
        """
        op = _Op(statement, params, what, wait, dedupe)
        self._submit(op)
        if wait:
            op.ticket.wait()

    def claim(self, statement: Statement, values: tuple):
        """The row `statement` (merged) returns for key values[0], or None. Raises when the
        database is unreachable instead of waiting for it."""
        op = _Op(statement, values, "claim", True)
        self._submit(op)
        return op.ticket.wait()

    def _submit(self, op: _Op) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the history writer has stopped")
            self._pending.append(op)
            # Waking the thread costs the caller: only when it sleeps, and then only for what
            # ends its sleep (a batch in flight picks the statement up when it returns).
            if self._sleeping or (self._lingering and op.waited):
                self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            tickets = [op.ticket for op in self._pending]
            self._flushing += 1
            self._cond.notify()
        try:
            for ticket in tickets:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not ticket.settled(left):
                    return False
            return True
        finally:
            with self._cond:
                self._flushing -= 1

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Flush, then end the thread; True when everything was written."""
        done = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        return done

    # --- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                self._write(batch)
        finally:
            self._reset_connection()

    def _urgent(self) -> bool:
        return self._stopping or self._flushing > 0 or any(op.waited for op in self._pending)

    def _next_batch(self) -> list[_Op] | None:
        """Every write pending, then the claims (one merged statement, each key once)."""
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._sleeping = True
                self._cond.wait()
                self._sleeping = False
            if self.linger and not self._urgent():
                self._lingering = True
                self._cond.wait_for(self._urgent, self.linger)
                self._lingering = False
            writes, claims, keep = [], [], []
            keys: set = set()
            for op in self._pending:
                if not op.statement.merged:
                    writes.append(op)
                elif (not claims or claims[0].statement == op.statement) \
                        and op.params[0] not in keys:
                    keys.add(op.params[0])
                    claims.append(op)
                else:
                    keep.append(op)
            self._pending = keep
            return writes + claims

    def _write(self, batch: list[_Op]) -> None:
        delay, waited, warned = RETRY_FIRST, 0.0, False
        while batch:
            try:
                rows = self._execute(batch)
            except UNAVAILABLE as exc:
                if not warned:
                    log.warning("history database unavailable during %s (%s); retrying until "
                                "it returns", batch[0].what, first_line(exc) or type(exc).__name__)
                    warned = True
                self._reset_connection()
                # A claim fails at once (its task is retried later); writes wait for the database.
                for op in batch:
                    if op.statement.merged:
                        op.ticket.resolve(error=exc)
                batch = [op for op in batch if not op.statement.merged]
                if batch:
                    time.sleep(delay)
                    waited += delay
                    delay = min(delay * 2, RETRY_MAX)
                continue
            except Exception as exc:
                self._reset_connection()
                if self.prepared and _pgcode(exc) in PREPARED_ERRORS:
                    log.info("history writes: the database connection doesn't keep prepared "
                             "statements (a pooler?); sending them whole from now on")
                    self.prepared = False
                    continue
                self._one_by_one(batch)  # find the statement at fault; the others go through
                return
            if warned:
                log.info("history database back: %s written after %.0f s", batch[0].what, waited)
            by_key = {row[0]: row for row in rows}
            for op in batch:
                op.ticket.resolve(by_key.get(op.params[0]) if op.statement.merged else None)
            return

    def _execute(self, batch: list[_Op]) -> list[tuple]:
        """One round trip: every write, then the merged claim; PostgreSQL runs a query of several
        statements as one transaction."""
        writes = _latest_of_each([op for op in batch if not op.statement.merged])
        claims = [op for op in batch if op.statement.merged]
        cursor = self.database.cursor()
        if cursor.connection is not self._conn:
            self._conn, self._ready = cursor.connection, set()
        parts, preparing = [], set()
        if self.prepared and not self._ready:
            # Each statement is planned once per connection (left to choose, PostgreSQL
            # re-plans the claim for every call: most of its cost), and never as a scan: every
            # statement here finds its rows by key, and a plan made while the table was empty
            # would otherwise scan it for good.
            parts.append("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
            preparing.add(_SESSION)
        for op in writes:
            parts.append(self._sql(cursor, op.statement, op.params, preparing))
        if claims:
            columns = [list(col) for col in zip(*(op.params for op in claims), strict=True)]
            parts.append(self._sql(cursor, claims[0].statement, columns, preparing))
        with pw.__exception_wrapper__:
            cursor.execute(";\n".join(parts))
            rows = cursor.fetchall() if claims else []
        self._ready |= preparing
        return rows

    def _sql(self, cursor, statement: Statement, params: Sequence, preparing: set) -> str:
        if not self.prepared:
            return cursor.mogrify(statement.sql, params).decode()
        text = cursor.mogrify(statement.execute(), params).decode()
        if statement.name in self._ready or statement.name in preparing:
            return text
        preparing.add(statement.name)
        return statement.prepare() + ";\n" + text

    def _one_by_one(self, batch: list[_Op]) -> None:
        for op in batch:
            try:
                rows = self._execute([op])
                op.ticket.resolve(rows[0] if rows else None)
            except Exception as exc:
                self._reset_connection()
                if not op.waited:  # nobody would hear of it otherwise
                    log.error("history write failed (%s): %s", op.what, first_line(exc))
                op.ticket.resolve(error=exc)

    def _reset_connection(self) -> None:
        # A fresh session next time: nothing half-prepared or aborted carries over.
        self._conn, self._ready = None, set()
        try:
            self.database.close()
        except Exception:
            pass


_SESSION = "session settings"


def _pgcode(exc: BaseException) -> str | None:
    orig = exc.args[0] if exc.args else None
    return getattr(orig, "pgcode", None) or getattr(exc, "pgcode", None)


def _latest_of_each(writes: list[_Op]) -> list[_Op]:
    """Writes less those a later write with the same dedupe key replaces."""
    last = {op.dedupe: i for i, op in enumerate(writes) if op.dedupe is not None}
    if not last:
        return writes
    return [op for i, op in enumerate(writes) if op.dedupe is None or last[op.dedupe] == i]


_writer: GroupCommit | None = None
_writer_lock = threading.Lock()


def writer_for(database: pw.Database) -> GroupCommit:
    """This process's writer for `database` (a new one after a fork, or for a new database)."""
    global _writer
    w = _writer
    if w is not None and w.database is database and w.pid == os.getpid():
        return w
    with _writer_lock:
        w = _writer
        if w is None or w.database is not database or w.pid != os.getpid():
            if w is not None and w.pid == os.getpid():
                w.stop()
            _writer = w = GroupCommit(database)
        return w


def stop_writer(timeout: float | None = 10.0) -> bool:
    """Write what is pending and end this process's writer; True when all was written."""
    global _writer
    with _writer_lock:
        w, _writer = _writer, None
    if w is None or w.pid != os.getpid():
        return True
    return w.stop(timeout)


def flush(timeout: float | None = None) -> bool:
    """Wait until this process's pending history writes are committed; False on timeout."""
    w = _writer
    return True if w is None or w.pid != os.getpid() else w.flush(timeout)


atexit.register(stop_writer, 5.0)
