"""What an embedded (chDB) store's one writer knows of each account's stored cost state.

Each collection asked chDB five small questions (its complete and latest invoices, its newest
and current pending estimate, its invoiced months, whether a month had estimates): ~4 ms of
CPU each on chDB's single connection, most of a 10,000-customer slot. A chDB data dir has one
writer, this process (storage/clickhouse.py's lock), so after one read per provider it keeps
the answers itself, updated by each write it makes. A write it doesn't model forgets the
provider, which is read again when next asked for. A ClickHouse server may have other writers:
there every question goes to the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass
class Account:
    """One (customer, provider)'s cost lines and invoice marks, as the store holds them."""

    complete: set[str] = field(default_factory=set)  # invoices marked complete
    latest: tuple | None = None  # (max charge_period_end ticks, len(id), id) of the latest invoice
    invoiced: set[date] = field(default_factory=set)  # billing periods with invoice lines
    estimated: set[date] = field(default_factory=set)  # periods with pending-estimate rows
    newest: int = 0  # newest collected_at (ticks) of any pending-estimate row, tombstones too
    live: dict[str, tuple[int, date]] = field(default_factory=dict)  # id -> (ticks, period)

    def saw_invoice(self, invoice_id: str, end: int) -> None:
        """An invoice line ending at `end` was stored: the latest invoice may change."""
        key = (end, len(invoice_id), invoice_id)
        if self.latest is None or key > self.latest:
            self.latest = key

    def tombstoned(self, ids: list[str], version: int) -> None:
        """These live estimates were retired at `version` (a tombstone is newer than its row)."""
        for line_id in ids:
            stamp, _ = self.live.pop(line_id)
            self.newest = max(self.newest, stamp + 1, version)


# The questions, over a whole provider at once ({t}: cost_lines, {ci}: complete_invoices).
LOAD = {
    "complete": "SELECT customer_id, invoice_id FROM {ci} FINAL WHERE provider_name = {{p:String}}",
    "latest": "SELECT customer_id, max((e, length(invoice_id), invoice_id)) FROM ("
              "SELECT customer_id, invoice_id, toUnixTimestamp64Micro(max(charge_period_end)) "
              "AS e FROM {t} WHERE provider_name = {{p:String}} AND NOT is_estimate "
              "AND invoice_id != '' GROUP BY customer_id, invoice_id) GROUP BY customer_id",
    "invoiced": "SELECT DISTINCT customer_id, billing_period FROM {t} WHERE "
                "provider_name = {{p:String}} AND NOT is_estimate AND {invoices}",
    "estimated": "SELECT DISTINCT customer_id, billing_period FROM {t} WHERE "
                 "provider_name = {{p:String}} AND is_estimate AND {pending}",
    "newest": "SELECT customer_id, toUnixTimestamp64Micro(max(collected_at)) FROM {t} WHERE "
              "provider_name = {{p:String}} AND is_estimate AND {pending} GROUP BY customer_id",
    "live": "SELECT customer_id, line_id, toUnixTimestamp64Micro(collected_at), billing_period "
            "FROM {t} FINAL WHERE provider_name = {{p:String}} AND is_estimate AND {pending}",
}


def accounts(answers: dict[str, list[tuple]]) -> dict[str, Account]:
    """A provider's accounts by customer, from LOAD's answers."""
    found: dict[str, Account] = {}

    def of(customer: str) -> Account:
        return found.setdefault(customer, Account())

    for c, invoice in answers["complete"]:
        of(c).complete.add(invoice)
    for c, key in answers["latest"]:
        of(c).latest = tuple(key)
    for c, period in answers["invoiced"]:
        of(c).invoiced.add(period)
    for c, period in answers["estimated"]:
        of(c).estimated.add(period)
    for c, newest in answers["newest"]:
        of(c).newest = int(newest)
    for c, line_id, stamp, period in answers["live"]:
        of(c).live[line_id] = (int(stamp), period)
    return found
