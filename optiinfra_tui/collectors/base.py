"""What a collector is: it yields batches of FOCUS rows (rows.py), never more than a page at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from optiinfra_tui.rows import Batch


@dataclass(frozen=True)
class CollectContext:
    """What a collector needs to know about one run; no secret lives here."""

    customer_id: str
    run_id: int
    collected_at: datetime
    known_invoice_ids: frozenset[str] = field(default_factory=frozenset)
    latest_invoice_id: str | None = None  # re-read every run: it may have grown
    # What this collector asked to remember at its earlier runs (Window.state): closed months,
    # manifests already read, export times seen.
    state: Mapping[str, str] = field(default_factory=dict)


class Collector(Protocol):
    provider: str
    data_types: tuple[str, ...]

    def collect(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        """Yield batches of rows for one data type; raise an errors.* kind on failure."""
        ...

    def ping(self) -> float:
        """Seconds for one cheap authenticated request; raises on failure."""
        ...

    def close(self) -> None: ...
