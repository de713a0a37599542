"""What a collector is: it yields batches of FOCUS rows (rows.py), never more than a page at once."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.rows import Batch

if TYPE_CHECKING:
    from optiinfra_tui.settings import Settings


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
    # Optional (default False): its cost runs skip invoices already stored whole
    # (CollectContext.known_invoice_ids).

    def collect(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        """Yield batches of rows for one data type; raise an errors.* kind on failure."""
        ...

    def ping(self) -> float:
        """Seconds for one cheap authenticated request; raises on failure."""
        ...

    def close(self) -> None: ...


def utc_today() -> date:
    """Today in UTC: the day a collector's window ends (collectors' `clock`; tests bring theirs)."""
    return datetime.now(UTC).date()


def previous_month(month: date) -> date:
    """The first day of the month before `month`'s."""
    return (month - timedelta(days=1)).replace(day=1)


def next_month(month: date) -> date:
    """The first day of the month after `month`'s."""
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def default_customer_only(settings: Settings, customer_id: str, provider: str, label: str,
                          keys: str) -> None:
    """ConfigError unless `customer_id` is the default customer, the one whose access comes
    from the provider's standard environment; `keys` are those its TOML table would need."""
    if customer_id != settings.default_customer_id:
        settings.customer(customer_id)  # ConfigError for an unknown customer
        raise ConfigError(
            f"Customer {customer_id!r} has no {label} access configured: add "
            f"[customers.{customer_id}.{provider}] with {keys} to the OPTIINFRA_CONFIG file.")


class ProviderCollector:
    """What every provider's collector shares: the customer whose access it holds, the checks
    before a run, a timed ping. Subclasses give `_batches` (a run) and `_probe` (one request)."""

    provider: str
    data_types: tuple[str, ...]
    customer_id: str
    skips_known_invoices = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(customer_id={self.customer_id!r})"

    def collect(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        """Yield batches of one data type; bad arguments fail here, before any request.

        ConfigError for a run of another customer than the collector's (its access is that
        customer's) or a data type the provider doesn't collect."""
        if ctx.customer_id != self.customer_id:
            raise ConfigError(f"This collector holds customer {self.customer_id!r}'s access, "
                              f"not {ctx.customer_id!r}'s.")
        if data_type not in self.data_types:
            raise ConfigError(f"Unknown data type {data_type!r} for {self.provider}. "
                              f"Choose from: {', '.join(self.data_types)}.")
        return self._batches(data_type, ctx)

    def ping(self) -> float:
        """Seconds for the provider's cheapest authenticated request; raises on failure."""
        started = time.monotonic()
        self._probe()
        return time.monotonic() - started

    def _batches(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        raise NotImplementedError

    def _probe(self) -> None:
        raise NotImplementedError
