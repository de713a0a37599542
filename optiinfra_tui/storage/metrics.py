"""The metrics store: collected rows in ClickHouse (a server, or chDB in-process) and cost queries.

Its parts, one job each: clickhouse (opening a store, the schema, library internals), writes
(write rules), buffered (the buffered writer), queries (cost queries).
"""

from __future__ import annotations

from optiinfra_tui.storage.buffered import BufferedWriter
from optiinfra_tui.storage.clickhouse import open_store
from optiinfra_tui.storage.queries import Queries
from optiinfra_tui.storage.writes import Writes


class MetricsStore(Writes, Queries):
    """One ClickHouse client with the schema in place; safe to share between threads."""

    def buffered(self, max_rows: int = 10_000) -> BufferedWriter:
        """A writer that coalesces small batches: each chDB insert costs ~10 ms however small."""
        return BufferedWriter(self, max_rows)


def open_metrics(url: str) -> MetricsStore:
    """Open the metrics store at CLICKHOUSE_URL (see `clickhouse.open_store`)."""
    return open_store(url, MetricsStore)
