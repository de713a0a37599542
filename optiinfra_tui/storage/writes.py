"""Write rules: idempotent inserts, invoice lines that retire estimates, pending-charges snapshots.

Writes are idempotent: ReplacingMergeTree keyed by each row's deterministic id, versioned by
collected_at, read with FINAL. Pending charges are estimates: each snapshot replaces the last
one, and a month counts from its invoice once that arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from optiinfra_tui.errors import ConfigError, DataError, OptiInfraError
from optiinfra_tui.rows import (
    ACCOUNT_SNAPSHOTS,
    COST_LINES,
    IMPORT_FILES,
    INVOICE,
    LEDGER,
    PENDING,
    PENDING_CHARGES,
    REPLACE_WINDOW,
    RESOURCES,
)
from optiinfra_tui.storage.clickhouse import ClickHouse, _scrub
from optiinfra_tui.storage.coalesce import Coalescer
from optiinfra_tui.storage.known import LOAD, Account, accounts
from optiinfra_tui.storage.metrics_schema import (
    COLLECTOR_STATE,
    COMPLETE_INVOICES,
    TABLES,
    InvoiceMark,
    StateEntry,
    pivot,
    ticks,
)

if TYPE_CHECKING:
    from optiinfra_tui.rows import Batch, FileImport, Window

log = logging.getLogger("optiinfra.metrics")

_CP = "customer_id = {c:String} AND provider_name = {p:String}"
# Invoice lines retire the pending estimate of their month; no other source takes part ('':
# rows stored before sources were recorded, all of them invoices or pending charges).
_RETIRING = (INVOICE, "")
_INVOICES = f"source IN ('{INVOICE}', '')"
_PENDING = f"source IN ('{PENDING}', '')"
_COST_COLUMNS = TABLES[COST_LINES].columns
_IS_ESTIMATE, _COLLECTED_AT, _CUSTOMER, _PROVIDER, _PERIOD, _SOURCE = map(_COST_COLUMNS.index, (
    "is_estimate", "collected_at", "customer_id", "provider_name", "billing_period", "source"))
_INVOICE_ID, _PERIOD_END = map(_COST_COLUMNS.index, ("invoice_id", "charge_period_end"))
# Settings of an import from files: CSV columns stay text (no float on the way to a Decimal);
# no deduplication of each block as it is inserted (an import's line ids are unique, and reads
# use FINAL): it halved the insert rate.
_IMPORT_SETTINGS = ("input_format_csv_use_best_effort_in_schema_inference = 0, "
                    "schema_inference_make_columns_nullable = 0, optimize_on_insert = 0, "
                    "max_insert_threads = 2")


class Writes(ClickHouse):
    """The write side of the metrics store."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Replacing estimates reads, inserts and tombstones: one writer at a time.
        self._write_lock = threading.RLock()
        self._invoiced: set[tuple[str, str, date]] = set()  # periods already cleared of estimates
        self._coalescer = Coalescer(self._write_columns_now)
        # chDB: this process is the store's only writer, and keeps what it knows (known.py).
        self._known: dict[str, dict[str, Account]] | None = {} if self.path else None
        self._tombstone = (
            self._tombstones("true", "greatest(collected_at + toIntervalMicrosecond(1), "
                                     "fromUnixTimestamp64Micro({v:Int64}, 'UTC'))")
            + f"FROM {self._t(COST_LINES)} FINAL WHERE {_CP} AND is_estimate AND {_PENDING}")
        # Rows of a window that its newest answer didn't write (older than it) leave totals;
        # replace_window names them (FROM ... WHERE).
        self._window_tombstone = self._tombstones(
            "is_estimate", "fromUnixTimestamp64Micro({v:Int64}, 'UTC')")

    def _shutdown(self) -> None:
        self._coalescer.close()  # an insert in flight ends first
        super()._shutdown()

    def _account(self, customer_id: str, provider: str) -> Account | None:
        """What this process knows of an account (None: ask the store); under _write_lock."""
        if self._known is None:
            return None
        found = self._known.get(provider)
        if found is None:
            names = {"t": self._t(COST_LINES), "ci": self._t(COMPLETE_INVOICES),
                     "invoices": _INVOICES, "pending": _PENDING}
            found = self._known[provider] = accounts(
                {name: self._rows(sql.format(**names), {"p": provider})
                 for name, sql in LOAD.items()})
        return found.setdefault(customer_id, Account())

    def _forget(self, *providers: str) -> None:
        """A write the known state doesn't model (or one that failed): ask the store again."""
        if self._known is not None:
            for provider in providers:
                self._known.pop(provider, None)

    def _learn_lines(self, data: list[list]) -> None:
        """Cost lines just stored: their accounts' invoiced months and latest invoice."""
        if not self._known:
            return
        for cid, provider, estimate, source, period, invoice, end in zip(
                data[_CUSTOMER], data[_PROVIDER], data[_IS_ESTIMATE], data[_SOURCE],
                data[_PERIOD], data[_INVOICE_ID], data[_PERIOD_END], strict=True):
            found = self._known.get(provider)
            if found is None:
                continue
            if estimate or source not in _RETIRING:
                self._forget(provider)
                continue
            account = found.setdefault(cid, Account())
            account.invoiced.add(period)
            if invoice:
                account.saw_invoice(invoice, ticks(end))

    def _tombstones(self, is_estimate: str, collected_at: str) -> str:
        """The INSERT ... SELECT of tombstones (is_deleted) for the cost lines that the FROM
        clause appended to it names, with these expressions for their estimate flag and version."""
        return (f"INSERT INTO {self._t(COST_LINES)} (customer_id, provider_name, line_id, "
                f"invoice_id, billing_period, source, is_estimate, collected_at, is_deleted) "
                f"SELECT customer_id, provider_name, line_id, invoice_id, billing_period, "
                f"source, {is_estimate}, {collected_at}, 1 ")

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
        if batch.table == REPLACE_WINDOW:
            for window in rows:
                self.replace_window(window)
            return 0
        if batch.table == IMPORT_FILES:
            return sum(self.import_files(job) for job in rows)
        writer = {COST_LINES: self.write_cost_lines, ACCOUNT_SNAPSHOTS: self.write_account_snapshots,
                  LEDGER: self.write_ledger, RESOURCES: self.write_resources}.get(batch.table)
        if writer is None:
            raise ValueError(f"unknown metrics table {batch.table!r}")
        return writer(rows)

    def write_columns(self, name: str, data: list[list]) -> int:
        """Write rows given as columns (`metrics_schema.pivot`'s form) to one table, as `write`
        does (pending charges excepted); returns the rows written. Rows other threads write
        meanwhile go in the same insert (storage/coalesce.py)."""
        if name not in (COST_LINES, ACCOUNT_SNAPSHOTS, LEDGER, RESOURCES, COMPLETE_INVOICES):
            raise ValueError(f"unknown metrics table {name!r}")
        return self._coalescer.insert(name, data)

    def _write_columns_now(self, name: str, data: list[list]) -> int:
        if name == COST_LINES:
            return self._write_cost_columns(data)
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
        estimate, stamps, sources = data[_IS_ESTIMATE], data[_COLLECTED_AT], data[_SOURCE]
        months = zip(data[_CUSTOMER], data[_PROVIDER], data[_PERIOD], strict=True)
        if any(estimate) or not set(sources).issubset(_RETIRING):
            # Only the invoice lines among them clear estimates.
            final = [(m, t) for m, t, e, src in zip(months, stamps, estimate, sources,
                                                      strict=True)
                     if not e and src in _RETIRING]
            months, stamps = (m for m, _ in final), [t for _, t in final]
        months = set(months)
        with self._write_lock:
            try:
                self._insert_columns(COST_LINES, data)
            except BaseException:
                self._forget(*set(data[_PROVIDER]))
                raise
            self._learn_lines(data)
            months -= self._invoiced
            if not months:
                return n
            version = max(map(ticks, set(stamps)))
            owners: dict[tuple[str, str], list[date]] = {}
            for cid, provider, month in sorted(months):
                owners.setdefault((cid, provider), []).append(month)
            for (cid, provider), periods in owners.items():
                params = {"c": cid, "p": provider, "v": version,
                          "m": [m.isoformat() for m in periods]}
                account = self._account(cid, provider)
                # Most months never had an estimate: this read costs far less than the insert.
                if (account.estimated.intersection(periods) if account is not None else
                        self._rows(f"SELECT count() FROM {self._t(COST_LINES)} WHERE {_CP} AND "
                                   f"is_estimate AND {_PENDING} AND billing_period IN "
                                   f"{{m:Array(Date)}}", params)[0][0]):
                    self._command(self._tombstone + " AND billing_period IN {m:Array(Date)}",
                                  params)
                    if account is not None:
                        account.tombstoned([i for i, (_, m) in account.live.items()
                                            if m in periods], version)
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
            account = self._account(customer_id, provider)
            if account is not None:
                newest, invoiced = account.newest, account.invoiced
            else:
                # Without FINAL: tombstones carry the time of the snapshot that replaced them.
                newest = self._rows(f"SELECT toUnixTimestamp64Micro(max(collected_at)) FROM "
                                    f"{self._t(COST_LINES)} WHERE {_CP} AND is_estimate AND "
                                    f"{_PENDING}", params)[0][0]
                invoiced = {m for (m,) in self._rows(
                    f"SELECT DISTINCT billing_period FROM {self._t(COST_LINES)} "
                    f"WHERE {_CP} AND NOT is_estimate AND {_INVOICES}", params)}
            if newest and newest > version:
                log.info("pending charges for %s/%s from %s are older than the stored ones: "
                         "ignored", customer_id, provider, collected_at)
                return 0
            keep = [r for r in rows if r.billing_period not in invoiced]
            try:
                if keep:
                    self._insert(COST_LINES, keep, all_estimates=True)
                if account is not None:
                    for r in keep:
                        stamp = ticks(r.collected_at)
                        account.live[r.line_id] = (stamp, r.billing_period)
                        account.estimated.add(r.billing_period)
                        account.newest = max(account.newest, stamp)
                kept = {r.line_id for r in keep}
                stale = None if account is None else [i for i in account.live if i not in kept]
                if stale is None or stale:  # (known: no estimate left to retire, no statement)
                    self._command(self._tombstone + " AND line_id NOT IN {keep:Array(String)}",
                                  {**params, "v": version, "keep": sorted(kept)})
                    if stale:
                        account.tombstoned(stale, version)
            except BaseException:
                self._forget(provider)
                raise
        return len(keep)

    def replace_window(self, window: Window) -> None:
        """Make the rows written at `window.collected_at` the whole of its source's answer for
        its billing periods and, with a `since`, for every charge from then on; then remember its
        state for the collector's next runs."""
        params = {"c": window.customer_id, "p": window.provider_name, "s": window.source,
                  "m": [p.isoformat() for p in window.billing_periods],
                  "v": ticks(window.collected_at)}
        span = "billing_period IN {m:Array(Date)}"
        if window.since is not None:
            span = (f"({span} OR charge_period_start >= "
                    f"fromUnixTimestamp64Micro({{since:Int64}}, 'UTC'))")
            params["since"] = ticks(window.since)
        rows = (f"WHERE {_CP} AND source = {{s:String}} AND {span} "
                f"AND collected_at < fromUnixTimestamp64Micro({{v:Int64}}, 'UTC')")
        with self._write_lock:
            self._forget(window.provider_name)  # rows of a source the known state doesn't model
            # Most windows have nothing older (a first import): a look without FINAL costs
            # far less than the FINAL read the tombstones need.
            if (window.billing_periods or window.since is not None) and self._rows(
                    f"SELECT count() FROM (SELECT 1 FROM {self._t(COST_LINES)} {rows} LIMIT 1)",
                    params)[0][0]:
                self._command(f"{self._window_tombstone}FROM {self._t(COST_LINES)} FINAL {rows}",
                              params)
            if window.state:
                now = datetime.now(UTC)
                self._insert(COLLECTOR_STATE, [
                    StateEntry(window.customer_id, window.provider_name, key, value, now)
                    for key, value in window.state.items()])

    def import_files(self, job: FileImport) -> int:
        """Let ClickHouse read the job's files into cost_lines (INSERT ... SELECT); returns the
        rows stored. Errors never carry the job's credentials."""
        fixed = {"customer_id": "{c:String}", "provider_name": "{p:String}",
                 "run_id": "{run:Int64}", "source": "{s:String}",
                 "collected_at": "fromUnixTimestamp64Micro({v:Int64}, 'UTC')",
                 "billing_period": "{m:Date}",
                 # Row numbers padded: a file's rows then arrive in key order, which the
                 # insert's sort takes fastest.
                 "line_id": (f"concat({_quote(job.line_id_prefix)}, ':', _file, ':', "
                             f"leftPad(toString(_row_number), 10, '0'))")}
        params = {"c": job.customer_id, "p": job.provider_name, "run": job.run_id,
                  "s": job.source, "v": ticks(job.collected_at),
                  "m": job.billing_period.isoformat()}
        secrets = {s for s in job.credentials if s}
        started = time.monotonic()
        with self._write_lock:
            self._forget(job.provider_name)
            select = job.select
            # One insert per file: an insert's memory grows with what it reads (all files in one
            # took 2 GB for 4 million rows, one at a time 0.9 GB), and it was no faster.
            for url in job.urls:
                try:
                    source = self._file_source(job, url, secrets)
                    if callable(select):  # the columns of the first file say how to read them
                        select = select({row[0]: row[1] for row in self._rows(
                            f"DESCRIBE TABLE {source} SETTINGS {_IMPORT_SETTINGS}")})
                    names = [c for c in _COST_COLUMNS if c in fixed or c in select]
                    exprs = [fixed.get(c) or select[c] for c in names]
                    self._command(f"INSERT INTO {self._t(COST_LINES)} ({', '.join(names)}) "
                                  f"SELECT {', '.join(exprs)} FROM {source} "
                                  f"SETTINGS {_IMPORT_SETTINGS}", params)
                except Exception as exc:
                    # The files read so far would count beside the period's previous rows
                    # until its replacement: they leave again.
                    self._undo_import(params)
                    hidden = tuple(secrets)
                    if isinstance(exc, OptiInfraError):
                        raise type(exc)(_scrub(str(exc), hidden)) from None
                    if "certificate verify failed" in str(exc):
                        raise ConfigError(
                            f"ClickHouse could not read {url}: it does not trust the server's "
                            "TLS certificate. Give the process that reads it (chDB: this one; "
                            "a ClickHouse server: its openSSL client settings) the CA bundle, "
                            "e.g. SSL_CERT_FILE.") from None
                    # ClickHouse's own message (a missing column, a value that doesn't parse):
                    # a bad export, not a bug of ours.
                    raise DataError(f"ClickHouse could not read {url} (nothing of its billing "
                                    f"period is stored; the period keeps its figures): "
                                    f"{_scrub(str(exc), hidden)}") from None
            rows = int(self._rows(
                f"SELECT count() FROM {self._t(COST_LINES)} WHERE {_CP} AND source = {{s:String}} "
                f"AND billing_period = {{m:Date}} AND collected_at = "
                f"fromUnixTimestamp64Micro({{v:Int64}}, 'UTC') AND is_deleted = 0", params)[0][0])
            if job.expected_rows is not None and rows != job.expected_rows:
                self._undo_import(params)
                raise DataError(
                    f"{job.provider_name} export {job.billing_period:%Y-%m}: its manifest "
                    f"lists {job.expected_rows:,} rows, its {len(job.urls)} files held "
                    f"{rows:,}: a file was cut short or replaced while it was read. Nothing "
                    "of it is stored; the next run reads it again.")
        log.info("%s/%s %s %s: %d rows from %d files in %.2f s", job.provider_name,
                 job.customer_id, job.source, job.billing_period, rows, len(job.urls),
                 time.monotonic() - started)
        return rows

    @staticmethod
    def _file_source(job: FileImport, url: str, secrets: set[str]) -> str:
        """The table function reading one of the job's files: url() with the job's headers,
        else s3() signed with its keys (or unsigned). Adds the secrets it uses to `secrets`."""
        if job.headers is not None:
            headers = dict(job.headers())
            # "Bearer <token>": the token is the secret.
            secrets.update(v.split(" ", 1)[-1] for k, v in headers.items()
                           if k.lower() == "authorization")
            named = ", ".join(f"{_quote(k)} = {_quote(v)}" for k, v in headers.items())
            return f"url({_quote(url)}, {_quote(job.file_format)}, headers({named}))"
        key, secret, token = job.credentials
        auth = ([_quote(key), _quote(secret)] + ([_quote(token)] if token else [])
                if key else ["NOSIGN"])
        return f"s3({', '.join([_quote(url), *auth, _quote(job.file_format)])})"

    def _undo_import(self, params: dict) -> None:
        """Tombstone the rows an import wrote (its version), so a failed one counts nowhere."""
        try:
            self._command(
                self._tombstones("is_estimate", "collected_at + toIntervalMicrosecond(1)")
                + f"FROM {self._t(COST_LINES)} WHERE {_CP} AND source = {{s:String}} AND "
                f"billing_period = {{m:Date}} AND collected_at = "
                f"fromUnixTimestamp64Micro({{v:Int64}}, 'UTC') AND is_deleted = 0", params)
        except Exception:  # the store itself failed: the original error says so
            log.warning("could not take back the rows of a failed import of %s/%s %s",
                        params["p"], params["c"], params["m"])

    def collector_state(self, customer_id: str, provider: str) -> dict[str, str]:
        """What the provider's collector asked to remember for this customer (Window.state)."""
        return dict(self._rows(
            f"SELECT key, value FROM {self._t(COLLECTOR_STATE)} FINAL WHERE {_CP}",
            {"c": customer_id, "p": provider}))

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
        if not marks:
            return
        try:
            self.write_columns(COMPLETE_INVOICES, pivot(TABLES[COMPLETE_INVOICES], marks))
        except BaseException:
            with self._write_lock:
                self._forget(provider)
            raise
        with self._write_lock:
            found = self._known.get(provider) if self._known else None
            if found is not None:
                found.setdefault(customer_id, Account()).complete.update(
                    m.invoice_id for m in marks)

    # --- state for incremental collection -----------------------------------------------------

    def invoice_state(self, customer_id: str, provider: str) -> tuple[frozenset[str], str | None]:
        """Invoices marked complete, and the latest stored invoice (re-read: it may grow)."""
        with self._write_lock:
            account = self._account(customer_id, provider)
            if account is not None:
                return (frozenset(account.complete),
                        account.latest[2] if account.latest else None)
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


def _quote(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
