"""The buffered writer: batches coalesced into large inserts, one in flight behind the caller."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from optiinfra_tui.rows import (
    ACCOUNT_SNAPSHOTS,
    COST_LINES,
    IMPORT_FILES,
    LEDGER,
    PENDING_CHARGES,
    REPLACE_WINDOW,
    RESOURCES,
)
from optiinfra_tui.storage.metrics_schema import TABLES, extend_columns

if TYPE_CHECKING:
    from optiinfra_tui.rows import Batch
    from optiinfra_tui.storage.writes import Writes

log = logging.getLogger("optiinfra.metrics")

_AT_ONCE = (PENDING_CHARGES, REPLACE_WINDOW, IMPORT_FILES)
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

    def __init__(self, store: Writes, max_rows: int = 10_000) -> None:
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
        """Buffer a batch; returns the rows it adds to the run's count. `pending_context`
        (customer_id, provider, collected_at) names an empty pending-charges snapshot.

        A window's replacement and an import from files are carried out at once, after a
        flush: a window replaces only what is stored before it.
        """
        if batch.table in _AT_ONCE:
            self.flush()
            written = self._store.write(batch, **pending_context)
            return len(batch.rows) if batch.table == PENDING_CHARGES else written
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
