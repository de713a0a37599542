"""Group commit for the history store on PostgreSQL: one thread per process writes the
history of many tasks in one statement, one transaction and one round trip.

A worker task writes its run three times (the attempt's claim, the provider check, the end).
Written one by one, each is a transaction and a round trip, and PostgreSQL parses and plans
each. Here every thread hands its writes to one writer, which sends whatever has gathered as
soon as the previous batch returns: idle, a write goes at once; busy, the writes of many
tasks share a commit. A batch is a single statement: each kind of write (a `Part`) is a
data-modifying WITH over arrays of its calls' values, prepared once per connection.
"""

from __future__ import annotations

import atexit
import hashlib
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
# Each statement is planned once per connection: left to choose, PostgreSQL re-plans
# statements over arrays for every call (most of their cost).
SESSION = "SET plan_cache_mode = force_generic_plan"
# A statement's first plan is made when it is prepared, maybe on an empty table: never as a
# scan, in that transaction only (every write here finds its rows by key).
FIRST_PLAN = "SET LOCAL enable_seqscan = off"


@dataclass(frozen=True)
class Part:
    """One kind of history write. A batch's calls of it become one array per column, the
    rows of the CTE `{rows}`; `sql` is one or more CTEs (`name AS (...)`, comma-separated)
    that write them, one named `{name}`.

    Every call changes one row of `table`, keyed by its first value: two calls on one row
    never share a batch (one statement can't change a row twice), unless `replaces` (the
    later call stands for both: a latest-value write). With `returns`, `{name}` returns rows
    whose first column is the key; each goes back to its call.
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # (column, SQL type), the key first
    sql: str
    table: str
    returns: bool = False
    replaces: bool = False

    def ctes(self, params: list[str]) -> str:
        """This part's CTEs, its arrays bound to `params` (one per column)."""
        names = ", ".join(c for c, _ in self.columns)
        arrays = ", ".join(f"{p}::{t}[]" for p, (_, t) in zip(params, self.columns, strict=True))
        rows = f"{self.name}_rows"
        return (f"{rows} AS (SELECT * FROM unnest({arrays}) AS v({names})),\n"
                + self.sql.format(rows=rows, name=self.name))


def batch_sql(parts: Sequence[Part], params: list[str]) -> str:
    """One statement writing every part (a returning one last), each part's columns bound to
    the next `params` in order."""
    ctes, i = [], 0
    for part in parts:
        ctes.append(part.ctes(params[i:i + len(part.columns)]))
        i += len(part.columns)
    returning = [p for p in parts if p.returns]
    tail = f"SELECT * FROM {returning[0].name}" if returning else "SELECT 1 WHERE false"
    return "WITH " + ",\n".join(ctes) + "\n" + tail


class Ticket:
    """A submitted write: `wait()` blocks until it is committed, or re-raises its failure.

    A bare lock, held until resolved: cheaper than an Event on a path every task takes."""

    __slots__ = ("_error", "_latch", "_resolved", "_result")

    def __init__(self) -> None:
        self._latch = threading.Lock()
        self._latch.acquire()
        self._resolved = False
        self._result = None
        self._error: BaseException | None = None

    def resolve(self, result=None, error: BaseException | None = None) -> None:
        """Settle it (once: only the writer thread resolves tickets)."""
        if not self._resolved:
            self._resolved = True
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
    part: Part
    values: tuple
    what: str
    waited: bool  # someone blocks on it: no lingering
    ticket: Ticket = field(default_factory=Ticket)

    @property
    def row(self) -> tuple[str, Hashable]:
        return self.part.table, self.values[0]


class GroupCommit:
    """The writer thread of one process and one PostgreSQL database.

    It writes what has gathered as soon as the batch in flight returns; writes nobody waits
    for (a task's end) wait up to `linger` for company (the thread's next claim). Callers
    writing batches themselves when the writer is idle measured worse (bench/queue_latency.py:
    more, smaller batches cost PostgreSQL more than the hand-over to this thread costs).
    """

    def __init__(self, database: pw.Database, linger: float = 0.005) -> None:
        self.database = database
        # How long writes nobody waits for may wait for company (a task's end for the next
        # task's claim); a waited-for write goes at once.
        self.linger = linger
        self.prepared = True  # off for good once a pooler shows it can't keep them
        self.pid = os.getpid()
        self._cond = threading.Condition()
        self._pending: list[_Op] = []
        self._inflight: list[_Op] = []  # the batch being written
        self._sleeping = False  # the writer thread waits for work (any will do)
        self._lingering = False  # it waits for company (only a waited-for write ends it)
        self._flushing = 0
        self._stopping = False
        self._prepared_on: dict[tuple[int, int], set[str]] = {}  # per connection
        self._prepare_failures = 0
        self._statements: dict[tuple[Part, ...], tuple[str, str, str]] = {}
        self._thread = threading.Thread(target=self._run, name="HistoryWriter", daemon=True)
        self._thread.start()

    # --- submitting -----------------------------------------------------------------------

    def write(self, part: Part, values: tuple, *, what: str = "history write",
              wait: bool = True) -> None:
        """Write `values` (a call of `part`) in a coming batch, never before a write submitted
        earlier. With `wait`, return once it is committed. Either way it is retried through an
        outage until the database takes it, as `history.durable` does."""
        op = _Op(part, values, what, wait)
        self._submit(op)
        if wait:
            op.ticket.wait()

    def query(self, part: Part, values: tuple):
        """The row a returning `part` gives for key values[0] (None: none). Raises when the
        database is unreachable instead of waiting for it."""
        op = _Op(part, values, part.name, True)
        self._submit(op)
        return op.ticket.wait()

    def _submit(self, op: _Op) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the history writer has stopped")
            self._pending.append(op)
            # Waking the thread costs the caller: only when it sleeps, and then only for what
            # ends its sleep (a batch in flight picks the write up when it returns).
            if self._sleeping or (self._lingering and op.waited):
                self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            tickets = [op.ticket for op in self._inflight + self._pending]
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
                try:
                    self._write(batch)
                except Exception as exc:  # a bug here must not leave callers waiting forever
                    log.exception("history writer: a batch failed")
                    for op in batch:
                        op.ticket.resolve(error=exc)
        finally:
            self._reset_connection()

    def _urgent(self) -> bool:
        return self._stopping or self._flushing > 0 or any(op.waited for op in self._pending)

    def _next_batch(self) -> list[_Op] | None:
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
            return self._take()

    def _take(self) -> list[_Op]:
        """The pending writes up to the first that can't join them (in order)."""
        batch, rows, returning = [], {}, None
        for op in self._pending:
            earlier = rows.get(op.row)
            if earlier is not None and op.part.replaces and earlier.part is op.part:
                rows[op.row] = op  # the latest value stands for both
            elif earlier is not None or (op.part.returns and returning not in (None, op.part)):
                break
            else:
                rows[op.row] = op
                returning = op.part if op.part.returns else returning
            batch.append(op)
        del self._pending[:len(batch)]
        self._inflight = batch
        return batch

    def _write(self, batch: list[_Op]) -> None:
        """Write a batch; through an outage, until the database takes its writes."""
        delay, waited, warned = RETRY_FIRST, 0.0, False
        while batch:
            try:
                rows = self._execute(batch)
            except UNAVAILABLE as exc:
                self._reset_connection()
                # A query fails at once (its task is retried later); writes wait for the database.
                for op in batch:
                    if op.part.returns:
                        op.ticket.resolve(error=exc)
                batch = [op for op in batch if not op.part.returns]
                if not batch:
                    return
                if not warned:
                    log.warning("history database unavailable during %s (%s); retrying until "
                                "it returns", batch[0].what, first_line(exc) or type(exc).__name__)
                    warned = True
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, RETRY_MAX)
                continue
            except Exception as exc:
                self._reset_connection()
                if self.prepared and _pgcode(exc) in PREPARED_ERRORS:
                    # A fresh session prepares again; if they keep vanishing, a pooler shares
                    # sessions between clients: send statements whole from then on.
                    self._prepare_failures += 1
                    if self._prepare_failures >= 3:
                        log.info("history writes: the database connection doesn't keep "
                                 "prepared statements (a pooler?); sending them whole")
                        self.prepared = False
                    continue
                self._one_by_one(batch)  # find the write at fault; the others go through
                return
            if warned:
                log.info("history database back: %s written after %.0f s", batch[0].what, waited)
            by_key = {row[0]: row for row in rows}
            for op in batch:
                op.ticket.resolve(by_key.get(op.values[0]) if op.part.returns else None)
            return

    def _execute(self, batch: list[_Op]) -> list[tuple]:
        """The batch as one statement, in one round trip and one transaction."""
        latest: dict[tuple, _Op] = {}
        for op in batch:  # of calls that replace one another, the latest
            latest[op.row] = op
        ops = [op for op in batch if latest[op.row] is op]
        parts = tuple(sorted({op.part for op in ops}, key=lambda p: (p.returns, p.name)))
        arrays: list[list] = []
        for part in parts:
            calls = [op.values for op in ops if op.part is part]
            arrays += [list(col) for col in zip(*calls, strict=True)]
        cursor = self.database.cursor()
        conn = cursor.connection
        key = (id(conn), conn.get_backend_pid())
        ready = self._prepared_on.get(key)
        name, prepare, execute = self._statement(parts)
        if not self.prepared:
            sql = FIRST_PLAN + ";\n" + cursor.mogrify(
                batch_sql(parts, ["%s"] * len(arrays)), arrays).decode()
        else:
            sql = cursor.mogrify(execute, arrays).decode()
            if ready is None or name not in ready:
                sql = FIRST_PLAN + ";\n" + prepare + ";\n" + sql
            if ready is None:
                sql = SESSION + ";\n" + sql
        with pw.__exception_wrapper__:
            cursor.execute(sql)
            rows = cursor.fetchall()
        self._prepared_on.setdefault(key, set()).add(name)
        return rows

    def _statement(self, parts: tuple[Part, ...]) -> tuple[str, str, str]:
        """Name, PREPARE and EXECUTE (with `%s` per array) of the statement for `parts`."""
        found = self._statements.get(parts)
        if found is None:
            types = [t for p in parts for _, t in p.columns]
            body = batch_sql(parts, [f"${i + 1}" for i in range(len(types))])
            name = "optiinfra_" + hashlib.sha1(body.encode()).hexdigest()[:12]
            found = self._statements[parts] = (
                name, f"PREPARE {name} AS {body}",
                f"EXECUTE {name}({', '.join(f'%s::{t}[]' for t in types)})")
        return found

    def _one_by_one(self, batch: list[_Op]) -> None:
        for op in batch:
            try:
                rows = self._execute([op])
                op.ticket.resolve(rows[0] if rows and op.part.returns else None)
            except Exception as exc:
                self._reset_connection()
                if not op.waited:  # nobody would hear of it otherwise
                    log.error("history write failed (%s): %s", op.what, first_line(exc))
                op.ticket.resolve(error=exc)

    def _reset_connection(self) -> None:
        """Close the thread's connection: the next batch starts a fresh session, where nothing
        half-prepared or aborted carries over."""
        try:
            if not self.database.is_closed():
                conn = self.database.connection()
                self._prepared_on.pop((id(conn), conn.get_backend_pid()), None)
        except Exception:
            pass
        try:
            self.database.close()
        except Exception:
            pass


def _pgcode(exc: BaseException) -> str | None:
    orig = exc.args[0] if exc.args else None
    return getattr(orig, "pgcode", None) or getattr(exc, "pgcode", None)


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
