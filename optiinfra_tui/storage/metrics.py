"""The metrics store: collected rows in ClickHouse (a server, or chDB in-process) and cost queries.

Writes are idempotent: ReplacingMergeTree keyed by each row's deterministic id, versioned by
collected_at, read with FINAL. Pending charges are estimates: each snapshot replaces the last
one, and a month counts from its invoice once that arrives. clickhouse_connect is imported
only when a store opens: this module stays cheap to import.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import unquote, urlparse, urlunparse

from optiinfra_tui.errors import ConfigError, OptiInfraError, TransientError
from optiinfra_tui.rows import (
    ACCOUNT_SNAPSHOTS,
    COST_LINES,
    LEDGER,
    PENDING_CHARGES,
    RESOURCES,
    Batch,
)
from optiinfra_tui.storage.embedded import require_embedded
from optiinfra_tui.storage.metrics_schema import (
    COMPLETE_INVOICES,
    MIGRATIONS,
    SCHEMA_VERSIONS,
    TABLES,
    WIRE_TYPES,
    InvoiceMark,
    SchemaVersion,
    extend_columns,
    pivot,
    ticks,
    wire_columns,
)

log = logging.getLogger("optiinfra.metrics")

DEFAULT_DATABASE = "optiinfra"
LOCK_FILE = "optiinfra-metrics.lock"
_DB_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ERRNO_RE = re.compile(r"\[Errno -?\d+\][^\"')]*")
_TIMEOUT_RE = re.compile(r"(Read|Connect|Connection) timed out")
_HTTP_STATUS_RE = re.compile(r"HTTP status (\d{3})")
# Server error codes: the user or password was refused; the server is overloaded or cut off.
_AUTH_CODES = frozenset({192, 193, 194, 195, 497, 516})
_TRANSIENT_CODES = frozenset({159, 202, 209, 210, 241, 242, 252, 425, 999})

_KEYS = {
    "provider": "provider_name",
    "service": "service_name",
    "customer": "customer_id",
    "day": "toString(toDate(charge_period_start))",
}
_CP = "customer_id = {c:String} AND provider_name = {p:String}"
_COST_COLUMNS = TABLES[COST_LINES].columns
_IS_ESTIMATE, _COLLECTED_AT, _CUSTOMER, _PROVIDER, _PERIOD = map(_COST_COLUMNS.index, (
    "is_estimate", "collected_at", "customer_id", "provider_name", "billing_period"))


@dataclass(frozen=True)
class CostTotal:
    key: str
    billed_cost: Decimal  # from invoice lines
    estimated_cost: Decimal  # from the pending estimate
    rows: int

    @property
    def total(self) -> Decimal:
        return self.billed_cost + self.estimated_cost


def _dec(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _utc_today() -> date:
    return datetime.now(UTC).date()


class MetricsStore:
    """One ClickHouse client with the schema in place; safe to share between threads."""

    def __init__(self, client, database: str, label: str, secrets: tuple[str, ...] = (),
                 path: str | None = None, lock_fd: int | None = None) -> None:
        self._client = client
        self.database = database
        self.label = label  # never holds a password
        self.embedded = path is not None
        self.path = path
        self._secrets = secrets
        self._lock_fd = lock_fd
        self._refs = 1
        self._closed = False
        # Replacing estimates reads, inserts and tombstones: one writer at a time.
        self._write_lock = threading.RLock()
        self._invoiced: set[tuple[str, str, date]] = set()  # periods already cleared of estimates
        db = database
        # Estimates count only for months without invoice lines, even if a race left some.
        self._counted = (f"(NOT is_estimate OR (customer_id, provider_name, billing_period) NOT IN "
                         f"(SELECT customer_id, provider_name, billing_period FROM {db}.{COST_LINES} "
                         f"WHERE NOT is_estimate))")
        self._tombstone = (
            f"INSERT INTO {db}.{COST_LINES} (customer_id, provider_name, line_id, invoice_id, "
            f"billing_period, source, is_estimate, collected_at, is_deleted) "
            f"SELECT customer_id, provider_name, line_id, invoice_id, billing_period, source, "
            f"true, greatest(collected_at + toIntervalMicrosecond(1), "
            f"fromUnixTimestamp64Micro({{v:Int64}}, 'UTC')), 1 "
            f"FROM {db}.{COST_LINES} FINAL WHERE {_CP} AND is_estimate")

    # --- plumbing -----------------------------------------------------------------------------

    def _init_schema(self) -> None:
        self._command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        for table in TABLES.values():
            self._command(table.ddl(self.database))
        self._migrate()

    def _migrate(self) -> int:
        """Apply the schema steps this store lacks; returns its version afterwards."""
        current = self._rows(f"SELECT max(version) FROM {self._t(SCHEMA_VERSIONS)}")[0][0]
        for version in sorted(v for v in MIGRATIONS if v > current):
            for statement in MIGRATIONS[version]:
                self._command(statement.format(db=self.database))
            self._insert(SCHEMA_VERSIONS, [SchemaVersion(version, datetime.now(UTC))])
            log.info("metrics schema of %s migrated to version %d", self.label, version)
            current = version
        return current

    @contextmanager
    def _backend(self) -> Iterator[None]:
        if self._closed:
            raise RuntimeError(f"The metrics store ({self.label}) is closed.")
        try:
            yield
        except OptiInfraError:
            raise
        except Exception as exc:
            mapped = _translate(exc, self.label, self._secrets)
            if mapped is None:
                raise
            raise mapped from None

    def _rows(self, sql: str, params: dict | None = None) -> list[tuple]:
        with self._backend():
            return self._client.query(sql, parameters=params).result_rows

    def _command(self, sql: str, params: dict | None = None) -> None:
        with self._backend():
            self._client.command(sql, parameters=params)

    def _insert(self, name: str, rows: list, all_estimates: bool = False) -> None:
        table = TABLES[name]
        data = pivot(table, rows)
        if all_estimates:
            data[table.columns.index("is_estimate")] = [True] * len(rows)
        self._insert_columns(name, data)

    def _insert_columns(self, name: str, data: list[list]) -> None:
        table = TABLES[name]
        with self._backend():
            context = self._client.create_insert_context(
                name, table.columns, self.database, column_type_names=WIRE_TYPES[name],
                column_oriented=True, data=wire_columns(table, data))
            try:
                self._client.data_insert(context)
            finally:
                # The context refers to itself (a bound method of its own): the columns it
                # holds would wait for a garbage collection pass to be freed.
                context.data = [[]]

    def _t(self, name: str) -> str:
        return f"{self.database}.{name}"

    # --- writes -------------------------------------------------------------------------------

    def write(self, batch: Batch, *, customer_id: str | None = None, provider: str | None = None,
              collected_at: datetime | None = None) -> int:
        """Write one batch to its table; returns the rows written.

        An empty pending-charges batch clears the estimate only when customer_id and provider
        are given: the rows are what name them otherwise.
        """
        rows = batch.rows
        if batch.table == PENDING_CHARGES:
            if rows:
                first = rows[0]
                return self.replace_pending_charges(first.customer_id, first.provider_name, rows,
                                                    first.collected_at)
            if customer_id and provider:
                return self.replace_pending_charges(customer_id, provider, [],
                                                    collected_at or datetime.now(UTC))
            log.warning("an empty pending-charges batch without customer and provider: ignored")
            return 0
        writer = {COST_LINES: self.write_cost_lines, ACCOUNT_SNAPSHOTS: self.write_account_snapshots,
                  LEDGER: self.write_ledger, RESOURCES: self.write_resources}.get(batch.table)
        if writer is None:
            raise ValueError(f"unknown metrics table {batch.table!r}")
        return writer(rows)

    def write_columns(self, name: str, data: list[list]) -> int:
        """Write rows given as columns (`metrics_schema.pivot`'s form) to one table, as `write`
        does (pending charges excepted); returns the rows written."""
        if name == COST_LINES:
            return self._write_cost_columns(data)
        if name not in (ACCOUNT_SNAPSHOTS, LEDGER, RESOURCES):
            raise ValueError(f"unknown metrics table {name!r}")
        if data[0]:
            self._insert_columns(name, data)
        return len(data[0])

    def write_cost_lines(self, rows: list) -> int:
        """Insert invoice lines; estimates for their months stop counting (tombstoned)."""
        if not rows:
            return 0
        return self._write_cost_columns(pivot(TABLES[COST_LINES], rows))

    def _write_cost_columns(self, data: list[list]) -> int:
        n = len(data[0])
        if not n:
            return 0
        estimate, stamps = data[_IS_ESTIMATE], data[_COLLECTED_AT]
        months = zip(data[_CUSTOMER], data[_PROVIDER], data[_PERIOD], strict=True)
        if any(estimate):  # only the invoice lines among them clear estimates
            final = [(m, t) for m, t, e in zip(months, stamps, estimate, strict=True) if not e]
            months, stamps = (m for m, _ in final), [t for _, t in final]
        months = set(months)
        with self._write_lock:
            self._insert_columns(COST_LINES, data)
            months -= self._invoiced
            if not months:
                return n
            version = max(map(ticks, set(stamps)))
            owners: dict[tuple[str, str], list[str]] = {}
            for cid, provider, month in sorted(months):
                owners.setdefault((cid, provider), []).append(month.isoformat())
            for (cid, provider), periods in owners.items():
                params = {"c": cid, "p": provider, "v": version, "m": periods}
                # Most months never had an estimate: this read costs far less than the insert.
                if self._rows(f"SELECT count() FROM {self._t(COST_LINES)} WHERE {_CP} AND "
                              f"is_estimate AND billing_period IN {{m:Array(Date)}}",
                              params)[0][0]:
                    self._command(self._tombstone + " AND billing_period IN {m:Array(Date)}",
                                  params)
            self._invoiced |= months
        return n

    def replace_pending_charges(self, customer_id: str, provider: str, rows: list,
                                collected_at: datetime) -> int:
        """Make `rows` the whole current estimate; returns the rows kept.

        Months that already have invoice lines are left out: they count from the invoice.
        A snapshot older than the stored one is ignored.
        """
        for r in rows:
            if r.customer_id != customer_id or r.provider_name != provider:
                raise ValueError(f"pending charge {r.line_id!r} is not {customer_id}/{provider}")
        params = {"c": customer_id, "p": provider}
        version = ticks(collected_at)
        with self._write_lock:
            # Without FINAL: tombstones carry the time of the snapshot that replaced them.
            newest = self._rows(f"SELECT toUnixTimestamp64Micro(max(collected_at)) FROM "
                                f"{self._t(COST_LINES)} WHERE {_CP} AND is_estimate", params)
            if newest and newest[0][0] and newest[0][0] > version:
                log.info("pending charges for %s/%s from %s are older than the stored ones: "
                         "ignored", customer_id, provider, collected_at)
                return 0
            invoiced = {m for (m,) in self._rows(
                f"SELECT DISTINCT billing_period FROM {self._t(COST_LINES)} "
                f"WHERE {_CP} AND NOT is_estimate", params)}
            keep = [r for r in rows if r.billing_period not in invoiced]
            if keep:
                self._insert(COST_LINES, keep, all_estimates=True)
            self._command(self._tombstone + " AND line_id NOT IN {keep:Array(String)}",
                          {**params, "v": version, "keep": [r.line_id for r in keep]})
        return len(keep)

    def write_account_snapshots(self, rows: list) -> int:
        if rows:
            self._insert(ACCOUNT_SNAPSHOTS, rows)
        return len(rows)

    def write_ledger(self, rows: list) -> int:
        if rows:
            self._insert(LEDGER, rows)
        return len(rows)

    def write_resources(self, rows: list) -> int:
        if rows:
            self._insert(RESOURCES, rows)
        return len(rows)

    def mark_invoices_complete(self, customer_id: str, provider: str,
                               invoice_ids: Iterable[str]) -> None:
        """Record invoices whose lines are all written, so the next run can skip them."""
        now = datetime.now(UTC)
        marks = [InvoiceMark(customer_id, provider, i, now) for i in dict.fromkeys(invoice_ids)]
        if marks:
            self._insert(COMPLETE_INVOICES, marks)

    def buffered(self, max_rows: int = 10_000) -> BufferedWriter:
        """A writer that coalesces small batches: each chDB insert costs ~10 ms however small."""
        return BufferedWriter(self, max_rows)

    # --- state for incremental collection -----------------------------------------------------

    def invoice_state(self, customer_id: str, provider: str) -> tuple[frozenset[str], str | None]:
        """Invoices marked complete, and the latest stored invoice (re-read: it may grow)."""
        params = {"c": customer_id, "p": provider}
        known = frozenset(i for (i,) in self._rows(
            f"SELECT invoice_id FROM {self._t(COMPLETE_INVOICES)} FINAL WHERE {_CP}", params))
        # Numeric ids compare by length first, so "10" is after "9".
        latest = self._rows(
            f"SELECT invoice_id FROM {self._t(COST_LINES)} "
            f"WHERE {_CP} AND NOT is_estimate AND invoice_id != '' GROUP BY invoice_id "
            f"ORDER BY max(charge_period_end) DESC, length(invoice_id) DESC, invoice_id DESC "
            f"LIMIT 1", params)
        return known, (latest[0][0] if latest else None)

    # --- reads --------------------------------------------------------------------------------

    def costs(self, by: str, since: date | None = None,
              customer_id: str | None = None) -> list[CostTotal]:
        """Billed and estimated totals grouped by provider, service, day or customer."""
        key = _KEYS.get(by)
        if key is None:
            raise ValueError(f"costs by {by!r}: choose one of {', '.join(_KEYS)}")
        where, params = self._filters(since, customer_id)
        order = "key" if by == "day" else "billed + estimated DESC, key"
        rows = self._rows(
            f"SELECT {key} AS key, sumIf(billed_cost, NOT is_estimate) AS billed, "
            f"sumIf(billed_cost, is_estimate) AS estimated, count() AS n "
            f"FROM {self._t(COST_LINES)} FINAL WHERE {where} GROUP BY key ORDER BY {order}",
            params)
        return [CostTotal(str(k), _dec(b), _dec(e), int(n)) for k, b, e, n in rows]

    def total(self, customer_id: str | None = None) -> CostTotal:
        where, params = self._filters(None, customer_id)
        ((billed, estimated, n),) = self._rows(
            f"SELECT sumIf(billed_cost, NOT is_estimate), sumIf(billed_cost, is_estimate), "
            f"count() FROM {self._t(COST_LINES)} FINAL WHERE {where}", params)
        return CostTotal(customer_id or "total", _dec(billed), _dec(estimated), int(n))

    def spend_by_day_and_provider(self, days: int = 30, customer_id: str | None = None,
                                  ) -> list[tuple[date, str, Decimal]]:
        """Billed plus estimated spend per day and provider over the last `days` days (UTC)."""
        where, params = self._filters(_utc_today() - timedelta(days=days - 1), customer_id)
        rows = self._rows(
            f"SELECT toDate(charge_period_start) AS day, provider_name, sum(billed_cost) "
            f"FROM {self._t(COST_LINES)} FINAL WHERE {where} "
            f"GROUP BY day, provider_name ORDER BY day, provider_name", params)
        return [(d, p, _dec(v)) for d, p, v in rows]

    def month_to_date(self, today: date | None = None, customer_id: str | None = None) -> Decimal:
        """Invoice lines plus the estimate for the month holding `today` (UTC)."""
        where, params = self._filters(None, customer_id)
        params["m"] = (today or _utc_today()).replace(day=1).isoformat()
        ((value,),) = self._rows(f"SELECT sum(billed_cost) FROM {self._t(COST_LINES)} FINAL "
                                 f"WHERE {where} AND billing_period = {{m:Date}}", params)
        return _dec(value)

    def pending_estimate(self, customer_id: str | None = None) -> Decimal:
        """The counted part of the current pending charges."""
        where, params = self._filters(None, customer_id)
        ((value,),) = self._rows(f"SELECT sum(billed_cost) FROM {self._t(COST_LINES)} FINAL "
                                 f"WHERE is_estimate AND {where}", params)
        return _dec(value)

    def count_rows(self, table: str, customer_id: str | None = None) -> int:
        """Live rows in a table (after dedup); cost_lines and pending_charges split one table."""
        name, where, params = self._select(table, customer_id, None)
        return int(self._rows(f"SELECT count() FROM {self._t(name)} FINAL WHERE {where}",
                              params)[0][0])

    def read_rows(self, table: str, customer_id: str | None = None,
                  provider: str | None = None, limit: int | None = None) -> list:
        """Live rows of a table as their dataclasses, in key order."""
        name, where, params = self._select(table, customer_id, provider)
        spec = TABLES[name]
        order = spec.engine.split("ORDER BY", 1)[1].strip()
        sql = (f"SELECT {', '.join(spec.columns)} FROM {self._t(name)} FINAL "
               f"WHERE {where} ORDER BY {order}")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [spec.row_type(*row) for row in self._rows(sql, params)]

    def _select(self, table: str, customer_id: str | None,
                provider: str | None) -> tuple[str, str, dict]:
        name = COST_LINES if table == PENDING_CHARGES else table
        if name not in TABLES:
            raise ValueError(f"unknown metrics table {table!r}")
        where, params = ["1"], {}
        if table in (COST_LINES, PENDING_CHARGES):
            where.append("is_estimate" if table == PENDING_CHARGES else "NOT is_estimate")
        if customer_id is not None:
            where.append("customer_id = {c:String}")
            params["c"] = customer_id
        if provider is not None:
            where.append("provider_name = {p:String}")
            params["p"] = provider
        return name, " AND ".join(where), params

    def ping(self) -> float:
        """Seconds for SELECT 1."""
        start = time.perf_counter()
        self._rows("SELECT 1")
        return time.perf_counter() - start

    def _filters(self, since: date | None, customer_id: str | None) -> tuple[str, dict]:
        where, params = [self._counted], {}
        if since is not None:
            where.append("toDate(charge_period_start) >= {since:Date}")
            params["since"] = since.isoformat()
        if customer_id is not None:
            where.append("customer_id = {c:String}")
            params["c"] = customer_id
        return " AND ".join(where), params

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release this handle; a shared chDB store closes when its last holder closes it."""
        if self._closed:
            return
        if self.path is not None:
            with _registry_lock:
                self._refs -= 1
                if self._refs > 0:
                    return
                _registry.pop(self.path, None)
                self._shutdown()
        else:
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        try:
            self._client.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None


_BUFFERED = {name: TABLES[name] for name in (COST_LINES, ACCOUNT_SNAPSHOTS, LEDGER, RESOURCES)}


class BufferedWriter:
    """Coalesces batches per table into inserts of up to `max_rows`; flushes on exit.

    A full buffer is inserted on a thread of its own while the caller goes on (fetching and
    parsing the next pages): the driver releases the GIL during an insert. At most one insert
    is in flight; its error surfaces in the caller at the next write, flush or exit. `flush`
    waits for it: once `flush` returns, every row given so far is stored. After a failed
    insert every later `flush` raises too, so nothing is recorded as stored that was lost.

    Pending charges are written at once, after a flush, so the invoice lines before them
    decide which months they may estimate. Before recording that rows are stored, flush, or
    see that `stored` has reached the `position` they were written at.
    """

    def __init__(self, store: MetricsStore, max_rows: int = 10_000) -> None:
        self._store = store
        self._max = max_rows
        # Per table, the rows as columns: pivoted a page at a time, so rows don't outlive
        # their page (thousands of live rows made the garbage collector's passes long).
        self._columns: dict[str, list[list]] = {}
        self._count = 0
        self._position = 0  # rows written so far
        self._stored = 0  # of those, rows stored: inserts end in order, none after a failure
        self._inflight: threading.Thread | None = None
        self._failed: BaseException | None = None

    def write(self, batch: Batch, **pending_context) -> int:
        """Buffer a batch; `pending_context` (customer_id, provider, collected_at) names an
        empty pending-charges snapshot."""
        if batch.table == PENDING_CHARGES:
            self.flush()
            return self._store.write(batch, **pending_context)
        table = _BUFFERED.get(batch.table)
        if table is None:
            raise ValueError(f"unknown metrics table {batch.table!r}")
        if self._failed is not None:  # the insert in flight failed already: say so now
            self._wait()
        columns = self._columns.get(batch.table)
        if columns is None:
            columns = self._columns[batch.table] = [[] for _ in table.columns]
        extend_columns(columns, table, batch.rows)
        self._count += len(batch.rows)
        self._position += len(batch.rows)
        if self._count >= self._max:
            self._wait()
            pending = self._take()
            thread = threading.Thread(target=self._insert, args=(*pending, True),
                                      name="metrics-insert")
            thread.start()
            self._inflight = thread
        return len(batch.rows)

    def flush(self) -> None:
        """Insert what is buffered and wait for any insert in flight: afterwards every row
        written is stored, or this raised."""
        self._wait()
        self._insert(*self._take(), False)

    @property
    def position(self) -> int:
        """How many rows were written so far (pending charges aside)."""
        return self._position

    @property
    def stored(self) -> int:
        """How many of the rows written so far are stored."""
        return self._stored

    def _take(self) -> tuple[dict[str, list[list]], int]:
        pending, count = self._columns, self._count
        self._columns, self._count = {}, 0
        return pending, count

    def _insert(self, pending: dict[str, list[list]], count: int, background: bool) -> None:
        try:
            for table, columns in pending.items():
                self._store.write_columns(table, columns)
            self._stored += count
        except BaseException as exc:
            self._failed = exc if isinstance(exc, Exception) else RuntimeError(
                f"an insert of buffered rows was interrupted ({type(exc).__name__})")
            if not background:
                raise

    def _wait(self) -> None:
        """Wait for the insert in flight; raise the error of any failed insert."""
        if self._inflight is not None:
            self._inflight.join()  # cleared only once done: an interrupted wait waits again
            self._inflight = None
        if self._failed is not None:
            raise self._failed

    def __enter__(self) -> BufferedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()
            return
        try:  # the rows are good data; keep them unless the store itself is what failed
            self.flush()
        except Exception:
            log.warning("could not flush buffered rows after %s", exc_type.__name__)


# --- opening ----------------------------------------------------------------------------------

_registry: dict[str, MetricsStore] = {}  # chDB path -> its one store in this process
_registry_lock = threading.Lock()


def open_metrics(url: str) -> MetricsStore:
    """Open the store at CLICKHOUSE_URL: chdb:///abs/path (in-process) or http(s)://.

    chDB holds one engine per process and one process per path, so its store is shared:
    every open of a path returns the same store, closed when the last holder closes it.
    """
    scheme = urlparse(url).scheme
    if scheme == "chdb":
        require_embedded(url)
        return _open_chdb(url)
    if scheme in ("http", "https", "clickhouse"):
        return _open_server(url)
    raise ConfigError(f"CLICKHOUSE_URL has scheme {scheme or '(none)'!r}, which is not supported. "
                      "Use chdb:///absolute/path or http(s)://user:password@host:8123/database.")


def _open_chdb(url: str) -> MetricsStore:
    parsed = urlparse(url)
    if parsed.netloc or not parsed.path.startswith("/"):
        raise ConfigError(f"CLICKHOUSE_URL={url!r}: a chDB URL names an absolute directory, "
                          "e.g. chdb:///home/me/.local/share/optiinfra/clickhouse.")
    path = os.path.realpath(unquote(parsed.path))
    with _registry_lock:
        store = _registry.get(path)
        if store is not None:
            store._refs += 1
            return store
        if _registry:
            other = next(iter(_registry))
            raise ConfigError(f"chDB can open one data path per process: {other} is open here, "
                              f"so {path} can't be. Close the other store first.")
        fd = _lock_path(path)
        try:
            import clickhouse_connect

            _lists_not_dataframes()
            with _chdb_without_pyarrow():
                client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        except Exception as exc:
            os.close(fd)
            raise ConfigError(f"chDB could not open {path}: {str(exc).splitlines()[0][:300]}") from None
        store = MetricsStore(client, DEFAULT_DATABASE, f"chDB at {path}", path=path, lock_fd=fd)
        try:
            store._init_schema()
        except BaseException:
            store._shutdown()
            raise
        _registry[path] = store
        return store


def _lists_not_dataframes() -> None:
    """Keep clickhouse_connect from importing pandas and numpy (~80 MB resident) on the first
    insert just to ask whether the data is a DataFrame: ours are lists."""
    # Libraries this process already loaded stay usable.
    from clickhouse_connect.driver import options

    for attr, module in (("pd", "pandas"), ("pd_time_test", "pandas"), ("np", "numpy")):
        if module not in sys.modules and attr not in vars(options):
            setattr(options, attr, None)


@contextmanager
def _chdb_without_pyarrow() -> Iterator[None]:
    """chdb imports pyarrow, and with it numpy (~40 MB resident, a tenth of a second), as it
    loads, for Arrow results we never ask for: keep them out unless this process has them."""
    block = "pyarrow" not in sys.modules and "chdb.state.sqlitelike" not in sys.modules
    if block:
        sys.modules["pyarrow"] = None  # type: ignore[assignment]  # import pyarrow: ImportError
    try:
        yield
    finally:
        if block and "pyarrow" in sys.modules and sys.modules["pyarrow"] is None:
            del sys.modules["pyarrow"]


def _lock_path(path: str) -> int:
    """Hold an exclusive lock on the data path for this process's lifetime, or explain who has it."""
    try:
        os.makedirs(path, exist_ok=True)
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"The chDB data path {path} can't be used ({exc.strerror}). Fix its "
                          "permissions, or set OPTIINFRA_HOME or CLICKHOUSE_URL elsewhere.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"The chDB data path {path} is in use by another process (pid {holder}). Embedded "
            "mode is one process: chDB opens a data path in one process only. Stop that process, "
            "or set CLICKHOUSE_URL to a ClickHouse server (http://user:password@host:8123/db) "
            "to run several processes.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _open_server(url: str) -> MetricsStore:
    parsed = urlparse(url)
    scheme = "http" if parsed.scheme == "clickhouse" else parsed.scheme
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError("CLICKHOUSE_URL has an invalid port. Use http(s)://host:8123/db.") from None
    database = unquote(parsed.path.strip("/")) or DEFAULT_DATABASE
    if not _DB_RE.match(database):
        raise ConfigError(f"CLICKHOUSE_URL names database {database!r}, which is not a plain "
                          "identifier: use letters, digits and '_'.")
    label = f"ClickHouse at {scheme}://{parsed.hostname or 'localhost'}{f':{port}' if port else ''}"
    # Both spellings of the password: as typed in the URL and percent-decoded.
    secrets = tuple(filter(None, {parsed.password, unquote(parsed.password or "")}))
    # The database goes in every query instead of the DSN: it may not exist yet.
    dsn = urlunparse(parsed._replace(scheme=scheme, path=""))
    try:
        import clickhouse_connect

        _lists_not_dataframes()
        # No session: a session admits one query at a time, and threads share this client.
        client = clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False,
                                               connect_timeout=5, send_receive_timeout=120)
    except Exception as exc:
        mapped = _translate(exc, label, secrets)
        if mapped is None:
            raise ConfigError(f"{label}: {_scrub(str(exc), secrets)}") from None
        raise mapped from None
    store = MetricsStore(client, database, label, secrets=secrets)
    try:
        store._init_schema()
    except BaseException:
        store._shutdown()
        raise
    return store


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """The first line of an error, without the password."""
    text = (text.strip().splitlines() or [""])[0][:300]
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _translate(exc: Exception, label: str, secrets: tuple[str, ...]) -> OptiInfraError | None:
    """The product's error for a driver error, or None to let it through (a bug of ours)."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    detail = _scrub(str(exc), secrets)
    if isinstance(exc, OperationalError):
        # urllib3 wraps the reason in three layers of repr: keep just the reason.
        reason = _ERRNO_RE.search(detail) or _TIMEOUT_RE.search(detail)
        return TransientError(f"{label} is unreachable ({reason[0] if reason else detail}). "
                              "Check that it is running and that CLICKHOUSE_URL points at it.")
    code = getattr(exc, "code", None)
    if isinstance(exc, DatabaseError) and code in _AUTH_CODES:
        return ConfigError(f"{label} refused the user or password in CLICKHOUSE_URL ({detail}). "
                           "Fix them there.")
    if isinstance(exc, DatabaseError) and code in _TRANSIENT_CODES:
        return TransientError(f"{label} is overloaded or unavailable ({detail}).")
    status = _HTTP_STATUS_RE.search(detail) if code is None else None
    if status and (status[1] == "429" or status[1] >= "500"):
        return TransientError(f"{label} is unavailable right now ({detail}).")
    if status:
        return ConfigError(f"{label} did not answer as ClickHouse does ({detail}). "
                           "Check the host, port and path in CLICKHOUSE_URL.")
    return None
