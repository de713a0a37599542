"""The metrics store against real chDB.

chDB hosts one engine per process, and other tests keep the session's engine open, so these
tests share it (the `chdb_url` fixture) and isolate themselves by customer and provider ids.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from optiinfra_tui.errors import ConfigError, TransientError
from optiinfra_tui.rows import (
    ACCOUNT_SNAPSHOTS,
    COST_LINES,
    LEDGER,
    PENDING_CHARGES,
    REPLACE_WINDOW,
    RESOURCES,
    AccountSnapshot,
    Batch,
    CostRow,
    LedgerEntry,
    ResourceRow,
    Window,
)
from optiinfra_tui.storage.metrics import open_metrics
from optiinfra_tui.storage.queries import CostSummary, CostTotal

REPO = Path(__file__).resolve().parents[1]
AT = datetime(2025, 3, 5, 12, 0, 0, 123456)  # naive UTC, like every timestamp in the project
_ids = itertools.count(1)


@pytest.fixture
def store(chdb_url):
    s = open_metrics(chdb_url)
    yield s
    s.close()


@pytest.fixture
def ids():
    """A customer and a provider name no other test uses."""
    n = next(_ids)
    return f"mcust{os.getpid()}x{n}", f"mprov{os.getpid()}x{n}"


def cost(ids, line: str, billed: str, period: date = date(2025, 2, 1), *, estimate=False,
         invoice: str = "100", service: str = "Compute", start: datetime | None = None,
         end: datetime | None = None, at: datetime = AT, **kw) -> CostRow:
    customer, provider = ids
    start = start or datetime(period.year, period.month, 1)
    fields = dict(
        line_id=line, customer_id=customer, provider_name=provider, billing_account_id="acct-1",
        invoice_id="" if estimate else invoice, billed_cost=Decimal(billed),
        effective_cost=Decimal(billed), list_cost=Decimal(billed),
        list_unit_price=Decimal("0.00694444"), billing_currency="USD",
        charge_period_start=start, charge_period_end=end or start + timedelta(days=27),
        billing_period=period, charge_category="Usage", charge_description=f"{service} {line}",
        service_name=service, resource_id="res-1", resource_name="web-1", region_id="ewr",
        pricing_quantity=Decimal("744"), pricing_unit="Hours", is_estimate=estimate, run_id=7,
        collected_at=at)
    fields.update(kw)
    return CostRow(**fields)


def pending(ids, line: str, billed: str, period: date, at: datetime = AT) -> CostRow:
    return cost(ids, f"pending:{period:%Y-%m}:{line}", billed, period, estimate=True, at=at)


def totals(store, by: str, key: str, **kw) -> CostTotal | None:
    return next((t for t in store.costs(by, **kw) if t.key == key), None)


# --- round trips ------------------------------------------------------------------------------


def test_cost_lines_round_trip_with_exact_decimals(store, ids):
    rows = [
        cost(ids, "inv:100:0", "0.000001"),
        cost(ids, "inv:100:1", "123456789012.345678", list_unit_price=Decimal("0.00000001")),
        cost(ids, "inv:100:2", "-5.25", charge_category="Credit"),
        cost(ids, "inv:100:3", "0.1"),
        cost(ids, "inv:100:4", "0.2"),
    ]
    assert store.write(Batch(COST_LINES, rows)) == 5
    back = store.read_rows(COST_LINES, customer_id=ids[0])
    assert back == rows
    assert all(type(r.billed_cost) is Decimal for r in back)
    total = store.total(ids[0])
    assert total.billed_cost == Decimal("123456789007.395679")
    assert str(total.billed_cost + Decimal(0)).endswith("7.395679")  # no float anywhere
    assert total.estimated_cost == 0 and total.rows == 5


def test_more_decimals_than_the_column_round_half_even(store, ids):
    rows = [cost(ids, "a", "0.0000005"), cost(ids, "b", "0.0000015"),
            cost(ids, "c", "1E+3", list_unit_price=Decimal("0.123456785"))]
    store.write_cost_lines(rows)
    back = {r.line_id: r for r in store.read_rows(COST_LINES, customer_id=ids[0])}
    assert back["a"].billed_cost == Decimal("0") and back["b"].billed_cost == Decimal("0.000002")
    assert back["c"].billed_cost == Decimal("1000")
    assert back["c"].list_unit_price == Decimal("0.12345678")


def test_account_ledger_and_resources_round_trip(store, ids):
    customer, provider = ids
    snaps = [
        AccountSnapshot(customer, provider, Decimal("-12.34"), Decimal("56.789012"),
                        datetime(2025, 3, 1, 8, 30), Decimal("100.00"), 7, AT),
        AccountSnapshot(customer, provider, Decimal("0"), Decimal("0"), None, Decimal("0"), 8,
                        AT + timedelta(minutes=15)),
    ]
    ledger = [LedgerEntry(f"bh:{i}", customer, provider, str(i), datetime(2025, 2, i + 1),
                          "invoice" if i % 2 else "payment", f"entry {i}", Decimal(f"{i}.01"),
                          Decimal(f"-{i}.999999"), 7, AT) for i in range(3)]
    resources = [
        ResourceRow(customer, provider, "i-1", "web-1", "instance", "ewr", "active",
                    "vc2-1c-1gb", 1, 1024, 25, datetime(2024, 12, 24, 10, 0, 1), 7, AT),
        ResourceRow(customer, provider, "i-2", "db-1", "instance", "ams", "pending",
                    "vc2-2c-4gb", 2, 4096, 80, None, 7, AT),
    ]
    assert store.write(Batch(ACCOUNT_SNAPSHOTS, snaps)) == 2
    assert store.write(Batch(LEDGER, ledger)) == 3
    assert store.write(Batch(RESOURCES, resources)) == 2
    assert store.read_rows(ACCOUNT_SNAPSHOTS, customer_id=customer) == snaps
    assert store.read_rows(LEDGER, customer_id=customer) == ledger
    assert store.read_rows(RESOURCES, customer_id=customer) == resources


def test_aware_datetimes_are_stored_as_utc(store, ids):
    from zoneinfo import ZoneInfo

    local = datetime(2025, 3, 5, 13, 0, tzinfo=ZoneInfo("Europe/Paris"))
    store.write_cost_lines([cost(ids, "tz", "1", start=local, end=local, at=local)])
    (back,) = store.read_rows(COST_LINES, customer_id=ids[0])
    assert back.charge_period_start == datetime(2025, 3, 5, 12, 0)
    assert back.collected_at == datetime(2025, 3, 5, 12, 0)


# --- idempotency ------------------------------------------------------------------------------


def test_writing_the_same_data_twice_changes_no_total_and_no_count(store, ids):
    customer, provider = ids
    lines = [cost(ids, f"inv:100:{i}", f"{i}.10") for i in range(50)]
    ledger = [LedgerEntry("bh:1", customer, provider, "1", AT, "payment", "p", Decimal("-5"),
                          Decimal("0"), 7, AT)]
    res = [ResourceRow(customer, provider, "i-1", "web", "instance", "ewr", "active", "p", 1,
                       1024, 25, None, 7, AT)]
    snap = [AccountSnapshot(customer, provider, Decimal("1"), Decimal("2"), None, Decimal("0"), 7,
                            AT)]

    def state():
        return (store.total(customer), [store.count_rows(t, customer) for t in
                                        (COST_LINES, LEDGER, RESOURCES, ACCOUNT_SNAPSHOTS)])

    for table, rows in ((COST_LINES, lines), (LEDGER, ledger), (RESOURCES, res),
                        (ACCOUNT_SNAPSHOTS, snap)):
        store.write(Batch(table, rows))
    first = state()
    assert first[1] == [50, 1, 1, 1]
    assert first[0].billed_cost == sum((r.billed_cost for r in lines), Decimal(0))

    # A later run re-collects the same lines (new collected_at), and a retried batch repeats.
    later = AT + timedelta(hours=1)
    store.write(Batch(COST_LINES, [cost(ids, f"inv:100:{i}", f"{i}.10", at=later)
                                   for i in range(50)]))
    for table, rows in ((COST_LINES, lines), (LEDGER, ledger), (RESOURCES, res),
                        (ACCOUNT_SNAPSHOTS, snap)):
        store.write(Batch(table, rows))
    assert state() == first


def test_latest_resource_row_wins(store, ids):
    customer, provider = ids
    old = ResourceRow(customer, provider, "i-1", "web", "instance", "ewr", "pending", "p", 1,
                      1024, 25, None, 7, AT)
    new = ResourceRow(customer, provider, "i-1", "web-renamed", "instance", "ewr", "active", "p",
                      1, 2048, 25, None, 8, AT + timedelta(minutes=15))
    store.write_resources([new])
    store.write_resources([old])  # arrives late: the older version must not win
    assert store.read_rows(RESOURCES, customer_id=customer) == [new]


# --- pending charges --------------------------------------------------------------------------


def test_each_pending_snapshot_replaces_the_previous_one(store, ids):
    customer, provider = ids
    march = date(2025, 3, 1)
    first = [pending(ids, str(i), "10.50", march) for i in range(3)]
    assert store.write(Batch(PENDING_CHARGES, first)) == 3
    assert store.pending_estimate(customer) == Decimal("31.50")

    second = [pending(ids, "0", "12.25", march, at=AT + timedelta(minutes=15))]
    assert store.write(Batch(PENDING_CHARGES, second)) == 1
    assert store.pending_estimate(customer) == Decimal("12.25")
    assert store.count_rows(PENDING_CHARGES, customer) == 1
    assert store.read_rows(PENDING_CHARGES, customer_id=customer) == second

    # The same snapshot again changes nothing.
    store.write(Batch(PENDING_CHARGES, second))
    assert store.count_rows(PENDING_CHARGES, customer) == 1
    assert store.total(customer) == CostTotal(customer, "USD", Decimal(0), Decimal("12.25"), 1)

    # An older snapshot arriving late is ignored.
    assert store.write(Batch(PENDING_CHARGES, first)) == 0
    assert store.pending_estimate(customer) == Decimal("12.25")

    # An empty snapshot clears the estimate when it says whose it is.
    store.write(Batch(PENDING_CHARGES, []), customer_id=customer, provider=provider,
                collected_at=AT + timedelta(hours=1))
    assert store.pending_estimate(customer) == 0
    assert store.count_rows(PENDING_CHARGES, customer) == 0


def test_an_invoice_for_a_month_replaces_that_months_estimate_only(store, ids):
    customer, _ = ids
    feb, mar = date(2025, 2, 1), date(2025, 3, 1)
    store.write(Batch(PENDING_CHARGES, [pending(ids, "0", "40", feb), pending(ids, "1", "2", feb),
                                        pending(ids, "0", "7.77", mar)]))
    assert store.pending_estimate(customer) == Decimal("49.77")

    store.write(Batch(COST_LINES, [cost(ids, "inv:100:0", "41.11", feb),
                                   cost(ids, "inv:100:1", "1.01", feb)]))
    assert store.pending_estimate(customer) == Decimal("7.77")
    assert store.count_rows(PENDING_CHARGES, customer) == 1
    assert store.total(customer) == CostTotal(customer, "USD", Decimal("42.12"), Decimal("7.77"), 3)
    # The month to date is the charges' days so far, not the month's invoice or estimate:
    # February's 42.12 covers February 1-27, March's estimate 7.77 March 1-27.
    feb20, mar9 = store.summary(date(2025, 2, 20), customer), store.summary(date(2025, 3, 9), customer)
    assert feb20 == [CostSummary("USD", Decimal("42.12"), Decimal("7.77"), Decimal("31.20"),
                                 feb, date(2025, 2, 20), 3)]
    assert (mar9[0].month_to_date, mar9[0].month_start) == (Decimal("2.59"), mar)

    # A later snapshot still listing February: February counts once, from the invoice.
    later = AT + timedelta(minutes=15)
    kept = store.write(Batch(PENDING_CHARGES, [pending(ids, "0", "40", feb, at=later),
                                               pending(ids, "0", "8.00", mar, at=later)]))
    assert kept == 1
    assert store.total(customer) == CostTotal(customer, "USD", Decimal("42.12"), Decimal("8.00"), 3)


def test_pending_rows_of_another_customer_are_refused(store, ids):
    row = pending(ids, "0", "1", date(2025, 3, 1))
    with pytest.raises(ValueError):
        store.replace_pending_charges("someone-else", ids[1], [row], AT)


# --- incremental state ------------------------------------------------------------------------


def test_invoice_state(store, ids):
    customer, provider = ids
    assert store.invoice_state(customer, provider) == (frozenset(), None)
    jan, feb = datetime(2025, 1, 1), datetime(2025, 2, 1)
    store.write_cost_lines([
        cost(ids, "inv:9:0", "1", invoice="9", start=jan, end=feb),
        cost(ids, "inv:8:0", "1", invoice="8", start=jan - timedelta(days=31), end=jan),
    ])
    assert store.invoice_state(customer, provider) == (frozenset(), "9")
    store.mark_invoices_complete(customer, provider, ["8", "9", "9"])
    assert store.invoice_state(customer, provider) == (frozenset({"8", "9"}), "9")
    # Same period end: the greater id wins, numerically ("10" after "9").
    store.write_cost_lines([cost(ids, "inv:10:0", "1", invoice="10", start=jan, end=feb)])
    assert store.invoice_state(customer, provider)[1] == "10"
    # Estimates never make an invoice.
    store.write(Batch(PENDING_CHARGES, [pending(ids, "0", "1", date(2025, 3, 1))]))
    assert store.invoice_state(customer, provider)[1] == "10"
    assert store.invoice_state("nobody", provider) == (frozenset(), None)


# --- reads ------------------------------------------------------------------------------------


def test_costs_by_provider_service_day_and_customer(store, ids):
    customer, provider = ids
    other = (customer + "b", provider + "b")
    store.write_cost_lines([
        cost(ids, "inv:1:0", "10.10", date(2025, 1, 1), service="Compute"),
        cost(ids, "inv:1:1", "0.90", date(2025, 1, 1), service="Storage",
             start=datetime(2025, 1, 15, 6)),
        cost(ids, "inv:2:0", "20.00", date(2025, 2, 1), service="Compute", invoice="2"),
        cost(other, "inv:5:0", "3.33", date(2025, 2, 1), service="Compute", invoice="5"),
    ])
    store.write(Batch(PENDING_CHARGES, [pending(ids, "0", "5.55", date(2025, 3, 1))]))

    assert totals(store, "provider", provider) == CostTotal(provider, "USD", Decimal("31.00"),
                                                             Decimal("5.55"), 4)
    assert totals(store, "customer", customer) == CostTotal(customer, "USD", Decimal("31.00"),
                                                             Decimal("5.55"), 4)
    assert totals(store, "customer", other[0]).billed_cost == Decimal("3.33")

    # Each provider's services apart: a service name is the provider's own.
    mine = store.costs("service", customer_id=customer)
    assert mine == [CostTotal("Compute", "USD", Decimal("30.10"), Decimal("5.55"), 3, provider),
                    CostTotal("Storage", "USD", Decimal("0.90"), Decimal(0), 1, provider)]

    # By day, each charge is spread over its period: January's lines cover January 1-27
    # and January 15 06:00 - February 11 06:00, February's February 1-27.
    days = store.costs("day", customer_id=customer)
    keys = [t.key for t in days]
    assert keys[0] == "2025-01-01" and keys[-1] == "2025-03-27" and "2025-02-28" not in keys
    assert len(keys) == 58 + 27
    assert sum(t.billed_cost for t in days) == Decimal("31.00")
    assert sum(t.estimated_cost for t in days) == Decimal("5.55")

    since = store.costs("day", since=date(2025, 1, 15), customer_id=customer)
    assert since[0].key == "2025-01-15" and since == days[14:]
    # From February on: February's line, the share of the Storage line's days in February
    # (246 of its 648 hours: 34 of its 90 cents, 34.17 exactly), and March's estimate.
    assert totals(store, "provider", provider, since=date(2025, 2, 1)) == CostTotal(
        provider, "USD", Decimal("20.34"), Decimal("5.55"), 3)
    with pytest.raises(ValueError):
        store.costs("region")

    # Another provider's service of the same name is a row of its own.
    store.write_cost_lines([cost((customer, "other"), "inv:9:0", "1.00", date(2025, 1, 1),
                                 service="Compute", invoice="9")])
    assert [(t.key, t.provider, t.total) for t in store.costs("service", customer_id=customer)
            ] == [("Compute", provider, Decimal("35.65")), ("Compute", "other", Decimal("1.00")),
                  ("Storage", provider, Decimal("0.90"))]
    assert [(t.key, t.provider) for t in store.costs("service", since=date(2025, 1, 1),
                                                      customer_id=customer)][:2] == [
        ("Compute", provider), ("Compute", "other")]


def test_spend_by_day_and_provider_and_month_to_date(store, ids):
    customer, provider = ids
    today, month, last_month = date(2025, 3, 10), date(2025, 3, 1), date(2025, 2, 1)

    def day(n: int, hours: int = 24) -> dict:
        start = datetime.combine(today - timedelta(days=n), datetime.min.time())
        return {"start": start, "end": start + timedelta(hours=hours)}

    store.write_cost_lines([
        cost(ids, "inv:1:0", "1.25", last_month, **day(2)),
        cost(ids, "inv:1:1", "2.50", last_month, **day(2)),
        # 27 days from January 29: 16 of them (February 9-24) are in the last 30 days.
        cost(ids, "inv:0:0", "9.00", last_month, invoice="0", **day(40, 27 * 24)),
    ])
    store.write(Batch(PENDING_CHARGES, [
        cost(ids, "pending:0", "0.75", month, estimate=True, **day(0)),
        cost(ids, "pending:1", "0.50", month, estimate=True, **day(1)),
    ]))
    mine = [(d, c, v) for d, p, c, v in store.spend_by_day_and_provider(30, customer, today)
            if p == provider]
    february = [(d, v) for d, c, v in mine if d < month]
    assert [d for d, _ in february] == [date(2025, 2, 9) + timedelta(days=i) for i in range(16)]
    assert {v for _, v in february} == {Decimal("0.33"), Decimal("0.34")}
    # Days 12-27 of 27: the rounded running totals 900 - 367 cents.
    assert sum(v for _, v in february) == Decimal("5.33")
    assert mine[-3:] == [(date(2025, 3, 8), "USD", Decimal("3.75")),
                         (date(2025, 3, 9), "USD", Decimal("0.50")),
                         (today, "USD", Decimal("0.75"))]
    assert store.summary(today, customer) == [CostSummary(
        "USD", Decimal("12.75"), Decimal("1.25"), Decimal("5.00"), month, today, 5)]
    assert store.pending_estimate(customer) == Decimal("1.25")
    assert store.ping() > 0


def test_by_day_spreads_each_charge_over_its_period_and_days_add_up_per_currency(store, ids):
    customer, provider = ids
    feb, mar = date(2025, 2, 1), date(2025, 3, 1)
    t = datetime
    odd = [  # (line, amount, currency, start, end)
        ("a", "10.01", "USD", t(2025, 1, 31, 20), t(2025, 2, 28, 20)),  # Vultr's month
        ("b", "-3.33", "USD", t(2025, 2, 3, 7, 13), t(2025, 2, 10)),  # a credit
        ("c", "0.07", "USD", t(2025, 2, 1), t(2025, 2, 8)),  # fewer cents than days
        ("d", "1234.567891", "USD", t(2025, 2, 2, 13), t(2025, 3, 3, 1)),  # finer than cents
        ("e", "4.99", "USD", t(2025, 2, 5, 12), t(2025, 2, 5, 12)),  # an instant: its day
        ("f", "0.0012345", "USD", t(2025, 2, 6, 23, 59), t(2025, 2, 7, 0, 1)),
        ("g", "1001", "JPY", t(2025, 2, 1, 3), t(2025, 2, 4, 3)),
        ("h", "77.777", "KWD", t(2025, 2, 26, 5), t(2025, 3, 1, 17)),
    ]
    lines = [cost(ids, f"inv:1:{n}", amount, feb, start=start, end=end, billing_currency=cur)
             for n, amount, cur, start, end in odd]
    lines.append(cost(ids, "inv:1:i", "19.99", feb, billing_currency="EUR",
                      start=t(2025, 2, 27, 16), end=t(2025, 3, 2, 9)))
    store.write_cost_lines(lines)
    store.write(Batch(PENDING_CHARGES, [
        cost(ids, "pending:2025-03:0", "8.41", mar, estimate=True, billing_currency="EUR",
             start=t(2025, 3, 1), end=t(2025, 3, 13, 11))]))

    stored = store.read_rows(COST_LINES, customer_id=customer)
    days = store.costs("day", customer_id=customer)
    by_provider = store.costs("provider", customer_id=customer)
    assert {t.currency for t in days} == {"USD", "JPY", "KWD", "EUR"}
    for currency in ("USD", "JPY", "KWD", "EUR"):
        mine = [d for d in days if d.currency == currency]
        billed = sum(r.billed_cost for r in stored if r.billing_currency == currency)
        assert sum(d.billed_cost for d in mine) == billed, currency
        assert sum(d.estimated_cost for d in mine) == (Decimal("8.41") if currency == "EUR" else 0)
        (total,) = [p for p in by_provider if p.currency == currency]
        assert (total.billed_cost, total.estimated_cost) == (
            billed, sum(d.estimated_cost for d in mine))
        # Whole units of the currency on each day, unless a line has finer digits.
        if currency != "USD":
            places = {"JPY": 0, "KWD": 3, "EUR": 2}[currency]
            assert all(d.total == d.total.quantize(Decimal(1).scaleb(-places)) for d in mine)

    usd = {d.key: d for d in days if d.currency == "USD"}
    assert min(usd) == "2025-01-31" and max(usd) == "2025-03-03" and len(usd) == 32
    assert usd["2025-01-31"].billed_cost == Decimal("0.06")  # 4 of 672 hours of 10.01
    assert usd["2025-02-05"].rows == 5  # a, b, c, d and the instant e
    # 1001 yen over 21, 24, 24 and 3 hours: 291.96, 333.67, 333.67 and 41.71, in whole yen.
    jpy = [(d.key, d.billed_cost) for d in days if d.currency == "JPY"]
    assert jpy == [("2025-02-01", 292), ("2025-02-02", 334), ("2025-02-03", 333),
                   ("2025-02-04", 42)]
    with pytest.raises(ValueError, match="several currencies"):
        store.total(customer)  # one figure would add yen to dollars


def test_estimates_among_invoice_lines_clear_only_the_invoiced_months(store, ids):
    customer, _ = ids
    store.write(Batch(PENDING_CHARGES, [pending(ids, "0", "1.00", date(2025, 3, 1))]))
    store.write_cost_lines([cost(ids, "inv:1:0", "2.00", date(2025, 2, 1)),
                            pending(ids, "1", "0.50", date(2025, 3, 1))])
    assert store.pending_estimate(customer) == Decimal("1.50")  # March has no invoice yet
    store.write_cost_lines([cost(ids, "inv:2:0", "3.00", date(2025, 3, 1))])
    assert store.pending_estimate(customer) == 0
    assert store.total(customer).billed_cost == Decimal("5.00")


def test_a_window_since_a_time_replaces_every_row_charged_from_then_on(store, ids):
    # GCP's export re-reads its last days whatever their invoice month: the window names a
    # time, and its source's rows charged from then on that this run didn't write leave.
    customer, provider = ids
    jan, feb, mar = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
    since = datetime(2025, 3, 1)

    def row(line, billed, period, start, at=AT, source="bigquery_export"):
        return cost(ids, line, billed, period, invoice="", start=start,
                    end=start + timedelta(days=1), at=at, source=source)

    store.write_cost_lines([
        row("before", "1.00", feb, datetime(2025, 2, 27)),  # charged before `since`: kept
        # March's invoice, charged the day before `since`: kept (March is not a named period).
        row("late-feb-in-mar", "2.00", mar, datetime(2025, 2, 28)),
        row("at-since", "4.00", mar, since),  # charged at `since`: gone unless rewritten
        row("after", "8.00", mar, datetime(2025, 3, 2)),  # gone unless rewritten
        row("rewritten", "16.00", mar, datetime(2025, 3, 3)),
        row("named-period", "32.00", jan, datetime(2025, 1, 10)),  # a named period: gone
        row("other-source", "64.00", mar, datetime(2025, 3, 2), source="other"),  # kept
    ])
    assert store.total(customer).billed_cost == Decimal("127.00")

    later = AT + timedelta(days=1)
    store.write_cost_lines([row("rewritten", "16.50", mar, datetime(2025, 3, 3), at=later)])
    window = Window(customer_id=customer, provider_name=provider, source="bigquery_export",
                    billing_periods=(jan,), collected_at=later, state={"seen": "1"},
                    since=since)
    assert store.write(Batch(REPLACE_WINDOW, [window])) == 0

    live = {r.line_id: r.billed_cost for r in store.read_rows(COST_LINES, customer_id=customer)}
    assert live == {"before": Decimal("1.00"), "late-feb-in-mar": Decimal("2.00"),
                    "rewritten": Decimal("16.50"), "other-source": Decimal("64.00")}
    assert store.total(customer).billed_cost == Decimal("83.50")
    assert store.collector_state(customer, provider) == {"seen": "1"}

    # The same window again (nothing older left) changes nothing.
    store.replace_window(window)
    assert store.total(customer).billed_cost == Decimal("83.50")


def test_a_write_leaves_no_cycle_holding_its_rows(store, ids):
    # clickhouse_connect's insert context refers to itself: the columns it holds would wait
    # for the cyclic garbage collector (and collections raise its threshold).
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        store.write_cost_lines([cost(ids, f"inv:1:{i}", "0.01") for i in range(50)])
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, list) and len(o) >= 50]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert held == []


def test_buffered_writer_coalesces_and_flushes(store, ids):
    customer, _ = ids
    with store.buffered(max_rows=250) as w:
        for page in range(4):
            w.write(Batch(COST_LINES, [cost(ids, f"inv:1:{page}:{i}", "0.01") for i in range(100)]))
        w._wait()  # the insert started at 300 >= 250 runs on a thread of its own
        assert store.count_rows(COST_LINES, customer) == 300
        w.write(Batch(PENDING_CHARGES, [pending(ids, "0", "1", date(2025, 3, 1))]))
        assert store.count_rows(COST_LINES, customer) == 400  # pending flushes first
    assert store.total(customer) == CostTotal(customer, "USD", Decimal("4.00"), Decimal("1"), 401)


def test_buffered_writer_flush_waits_for_the_insert_in_flight(store, ids, monkeypatch):
    customer, _ = ids
    real, started = store.write_columns, threading.Event()

    def slow(table, columns):
        started.set()
        time.sleep(0.3)
        return real(table, columns)

    monkeypatch.setattr(store, "write_columns", slow)
    w = store.buffered(max_rows=100)
    w.write(Batch(COST_LINES, [cost(ids, f"inv:1:{i}", "0.01") for i in range(100)]))
    assert started.wait(5)  # in flight, and write() has returned
    w.write(Batch(COST_LINES, [cost(ids, "inv:2:0", "0.01")]))
    assert (w.position, w.stored) == (101, 0)
    w._wait()
    assert (w.position, w.stored) == (101, 100)  # the first insert's rows
    w.flush()
    assert (w.position, w.stored) == (101, 101)
    assert store.count_rows(COST_LINES, customer) == 101


def test_buffered_writer_background_error_surfaces_and_sticks(store, ids, monkeypatch, caplog):
    customer, _ = ids
    calls = []

    def failing(table, columns):
        calls.append(len(columns[0]))
        raise TransientError("ClickHouse is unreachable")

    monkeypatch.setattr(store, "write_columns", failing)
    w = store.buffered(max_rows=100)
    assert w.write(Batch(COST_LINES, [cost(ids, f"inv:1:{i}", "0.01") for i in range(100)])) == 100
    with pytest.raises(TransientError, match="unreachable"):  # at the next write, at the latest
        w.write(Batch(COST_LINES, [cost(ids, f"inv:2:{i}", "0.01") for i in range(100)]))
    monkeypatch.undo()
    # The store is back, but the failed insert's rows are gone: a flush must not claim
    # that everything written is stored (invoices would be marked complete without rows).
    with pytest.raises(TransientError, match="unreachable"):
        w.flush()
    with pytest.raises(ValueError, match="boom"):
        with w:
            raise ValueError("boom")  # exit logs the failure, keeps the original error
    assert "could not flush buffered rows after ValueError" in caplog.text
    assert calls == [100]
    assert w.stored == 0
    assert store.count_rows(COST_LINES, customer) == 0


def test_concurrent_writers_and_readers(store, ids):
    customer, _ = ids
    errors = []

    def work(n: int) -> None:
        try:
            for page in range(10):
                store.write_cost_lines([cost(ids, f"inv:{n}:{page}:{i}", "0.10", invoice=str(n))
                                        for i in range(20)])
                store.costs("provider")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.total(customer) == CostTotal(customer, "USD", Decimal("120.00"), Decimal(0), 1200)


# --- opening ----------------------------------------------------------------------------------


def _run(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_a_second_process_on_the_same_chdb_path_gets_a_clear_config_error(store, chdb_url):
    result = _run(f"""
        from optiinfra_tui.errors import ConfigError
        from optiinfra_tui.storage.metrics import open_metrics
        try:
            open_metrics({chdb_url!r})
        except ConfigError as exc:
            print(exc)
            raise SystemExit(3)
        """)
    assert result.returncode == 3, result.stderr[-2000:]
    assert f"in use by another process (pid {os.getpid()})" in result.stdout
    assert "CLICKHOUSE_URL" in result.stdout


def test_same_path_is_shared_and_another_path_is_refused_in_process(store, chdb_url, tmp_path):
    again = open_metrics(chdb_url)
    assert again is store
    again.close()
    assert store.ping() > 0  # still open: one holder left
    with pytest.raises(ConfigError, match="one data path per process"):
        open_metrics(f"chdb://{tmp_path / 'other'}")


def test_opening_chdb_loads_no_pyarrow_numpy_or_pandas(tmp_path):
    # In a fresh process prepared as every entry point prepares it: ~45 MB resident and a
    # tenth of a second we don't need (lists only): bench/process_setup.py.
    result = _run(f"""
        import sys
        from datetime import datetime
        from decimal import Decimal
        from optiinfra_tui.worker.startup import prepare_process
        prepare_process()
        from optiinfra_tui.rows import COST_LINES, Batch, CostRow
        from optiinfra_tui.storage.metrics import open_metrics
        s = open_metrics("chdb://{tmp_path / 'db'}")
        at = datetime(2025, 3, 5)
        s.write(Batch(COST_LINES, [CostRow("l", "c", "p", "a", "1", Decimal(1), Decimal(1),
            Decimal(1), Decimal(1), "USD", at, at, at.date(), "Usage", "d", "s", "", "", "",
            Decimal(1), "h", False, 1, at)]))
        print(s.count_rows(COST_LINES), sorted(m for m in ("pyarrow", "numpy", "pandas")
                                              if m in sys.modules))
        import pyarrow  # still there for whoever wants it
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1 []"


def test_another_thread_importing_pyarrow_while_chdb_opens_gets_the_real_module(tmp_path):
    # The moment chDB loads the module that would import pyarrow, another thread imports it:
    # keeping pyarrow from chDB must never keep it from anyone else.
    result = _run(f"""
        import importlib.machinery, sys, threading
        from optiinfra_tui.worker.startup import prepare_process
        prepare_process()
        got = []

        def import_pyarrow():
            try:
                import pyarrow
                got.append(pyarrow.__name__)
            except ImportError as exc:
                got.append(f"ImportError: {{exc}}")

        class Meanwhile:
            # Runs the other thread as the module starts executing (not in find_spec, which
            # holds the global import lock).
            def find_spec(self, name, path=None, target=None):
                if name != "chdb.state.sqlitelike":
                    return None
                sys.meta_path.remove(self)
                spec = importlib.machinery.PathFinder.find_spec(name, path)
                execute = spec.loader.exec_module

                def exec_module(module):
                    other = threading.Thread(target=import_pyarrow)
                    other.start()
                    other.join()
                    execute(module)

                spec.loader.exec_module = exec_module
                return spec

        sys.meta_path.insert(0, Meanwhile())
        from optiinfra_tui.storage.metrics import open_metrics
        s = open_metrics("chdb://{tmp_path / 'db'}")
        print(got, s.count_rows("cost_lines"))
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "['pyarrow'] 0"


def test_a_path_can_change_once_the_first_is_closed(tmp_path):
    # In a fresh process: chDB takes another path only after every client of the first closed.
    result = _run(f"""
        from optiinfra_tui.storage.metrics import open_metrics
        a = open_metrics("chdb://{tmp_path / 'a'}")
        a.close()
        b = open_metrics("chdb://{tmp_path / 'b'}")
        print(b.count_rows("cost_lines"))
        b.close()
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "0"


def test_importing_the_module_opens_nothing():
    result = _run("""
        import sys
        import optiinfra_tui.storage.metrics
        print(sorted(m for m in sys.modules if m.startswith(("chdb", "clickhouse_connect"))))
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("password", ["s3cret-Pw", "p%40ss%2Fw0rd"])
def test_an_unreachable_server_is_transient_and_never_shows_the_password(password):
    url = f"http://collector:{password}@127.0.0.1:{_closed_port()}/metrics"
    with pytest.raises(TransientError) as info:
        open_metrics(url)
    message = str(info.value)
    assert "unreachable" in message and "127.0.0.1" in message
    for secret in (password, "p@ss/w0rd"):
        assert secret not in message


@pytest.mark.parametrize("url", ["redis://localhost", "chdb://relative/path",
                                 "http://localhost:8123/bad-name;drop"])
def test_bad_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        open_metrics(url)


def _answering(status: int, body: bytes, code: str | None = None):
    """A local HTTP server that answers every request with one status, like a sick ClickHouse."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(status)
            if code:
                self.send_header("X-ClickHouse-Exception-Code", code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("status, body, code, error", [
    (516, b"Code: 516. DB::Exception: collector: Authentication failed. (AUTHENTICATION_FAILED)",
     "516", ConfigError),
    (503, b"upstream unavailable", None, TransientError),
    (404, b"not found", None, ConfigError),
])
def test_server_answers_map_to_error_kinds_without_the_password(status, body, code, error):
    server = _answering(status, body, code)
    try:
        with pytest.raises(error) as info:
            open_metrics(f"http://collector:hunter2@127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert "CLICKHOUSE_URL" in str(info.value) or error is TransientError
    assert "hunter2" not in str(info.value)


def test_a_server_lost_mid_run_is_transient():
    from clickhouse_connect.driver.exceptions import OperationalError

    from optiinfra_tui.storage.metrics import MetricsStore

    class Down:
        def query(self, *a, **k):
            raise OperationalError("connection reset talking to http://x:topsecret@h:8123")

        command = insert = create_insert_context = data_insert = query

    store = MetricsStore(Down(), "metrics", "ClickHouse at http://h:8123", secrets=("topsecret",))
    with pytest.raises(TransientError) as info:
        store.write_ledger([LedgerEntry("bh:1", "c", "p", "1", AT, "payment", "", Decimal(1),
                                        Decimal(0), 1, AT)])
    assert "topsecret" not in str(info.value)
    with pytest.raises(TransientError):
        store.costs("provider")


# --- schema versions --------------------------------------------------------------------------

V1_SCHEMA = Path(__file__).with_name("metrics_schema_v1.sql")
# Rows as the first release wrote them: invoice 100 for February (one line also in an older
# version), February's estimate tombstoned when that invoice came, March's estimate current.
V1_ROWS = [  # line_id, invoice_id, billed_cost, billing_period, is_estimate, collected_at, deleted
    ("inv:100:0", "100", "99.99", "2025-02-01", 0, "2025-02-28 00:00:00", 0),
    ("inv:100:0", "100", "10.10", "2025-02-01", 0, "2025-03-01 00:00:00", 0),
    ("inv:100:1", "100", "20.20", "2025-02-01", 0, "2025-03-01 00:00:00", 0),
    ("inv:100:2", "100", "-1.05", "2025-02-01", 0, "2025-03-01 00:00:00", 0),
    ("pending:2025-02:0", "", "7.77", "2025-02-01", 1, "2025-02-20 00:00:00", 0),
    ("pending:2025-02:0", "", "0", "2025-02-01", 1, "2025-03-01 00:00:00", 1),
    ("pending:2025-03:0", "", "5.55", "2025-03-01", 1, "2025-03-10 00:00:00", 0),
]
_V1_TOTALS = ("SELECT toString(sumIf(billed_cost, NOT is_estimate)), "
              "toString(sumIf(billed_cost, is_estimate)), count() FROM optiinfra.cost_lines FINAL")
_DESCRIBE = """
    def describe(store):
        from optiinfra_tui.storage.metrics_schema import TABLES
        return {t: [list(c[:4]) for c in store._rows(f"DESCRIBE TABLE optiinfra.{t}")]
                for t in TABLES}
    """


def _exact(totals: list) -> list:
    """Totals printed as text (billed, estimated, rows) as exact numbers."""
    return [Decimal(totals[0]), Decimal(totals[1]), totals[2]]


def _make_v1_store(path: Path) -> list:
    """A chDB store as the first release left it; returns its totals as that release's query
    reads them (billed, estimated, rows)."""
    values = ", ".join(
        f"('{line}', 'acme', 'vultr', '{invoice}', {billed}, 'USD', '{period}', '{period}', "
        f"{estimate}, '{at}', {deleted})" for line, invoice, billed, period, estimate, at, deleted in V1_ROWS)
    result = _run(f"""
        import json
        import clickhouse_connect
        client = clickhouse_connect.get_client(dsn="chdb://{path}")
        client.command("CREATE DATABASE optiinfra")
        text = "".join(l for l in open({str(V1_SCHEMA)!r}) if not l.startswith("--"))
        for statement in filter(str.strip, text.split(";")):
            client.command(statement)
        client.command("INSERT INTO optiinfra.cost_lines (line_id, customer_id, provider_name, "
                       "invoice_id, billed_cost, billing_currency, billing_period, "
                       "charge_period_start, is_estimate, collected_at, is_deleted) "
                       "VALUES {values}")
        client.command("INSERT INTO optiinfra.complete_invoices VALUES "
                       "('acme', 'vultr', '100', '2025-03-01 00:00:00')")
        print(json.dumps(client.query({_V1_TOTALS!r}).result_rows[0]))
        client.close()
        """)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_a_store_made_by_the_first_release_is_upgraded_in_place(tmp_path):
    old, fresh = tmp_path / "v1", tmp_path / "fresh"
    billed = sum(Decimal(b) for line, _, b, _, e, at, _ in V1_ROWS
                 if not e and at.startswith("2025-03"))
    expected = [Decimal("29.25"), Decimal("5.55"), 4]
    assert billed == expected[0] and _exact(_make_v1_store(old)) == expected
    result = _run(f"""
        import json
        from datetime import datetime
        from decimal import Decimal
        from optiinfra_tui.rows import COST_LINES, Batch, CostRow
        from optiinfra_tui.storage.metrics import open_metrics
        {textwrap.indent(textwrap.dedent(_DESCRIBE), " " * 8).strip()}
        out = {{}}
        s = open_metrics("chdb://{old}")
        out["version"] = s._rows("SELECT max(version) FROM optiinfra.schema_version")[0][0]
        out["opened"] = [str(s.total("acme").billed_cost), str(s.total("acme").estimated_cost),
                         s.total("acme").rows]
        out["v1_totals"] = list(s._rows({_V1_TOTALS!r})[0])
        out["sources"] = sorted((r.line_id, r.source) for r in s.read_rows(COST_LINES, "acme")
                                + s.read_rows("pending_charges", "acme"))
        out["known"] = sorted(s.invoice_state("acme", "vultr")[0])
        at = datetime(2025, 4, 1)
        s.write(Batch(COST_LINES, [CostRow("inv:101:0", "acme", "vultr", "acme", "101",
            Decimal("3.33"), Decimal("3.33"), Decimal("3.33"), Decimal(0), "USD",
            datetime(2025, 3, 1), at, datetime(2025, 3, 1).date(), "Usage", "d", "Compute", "",
            "", "", Decimal(1), "h", False, 2, at, "invoice")]))
        out["written"] = [str(s.total("acme").billed_cost), str(s.total("acme").estimated_cost),
                          s.total("acme").rows]
        out["new_source"] = [r.source for r in s.read_rows(COST_LINES, "acme")
                             if r.line_id == "inv:101:0"]
        out["upgraded"] = describe(s)
        s.close()
        s = open_metrics("chdb://{old}")  # again: nothing left to apply, nothing applied twice
        out["reopened"] = s._migrate()
        s.close()
        s = open_metrics("chdb://{fresh}")
        out["fresh"] = describe(s)
        out["fresh_version"] = s._rows("SELECT max(version) FROM optiinfra.schema_version")[0][0]
        s.close()
        print(json.dumps(out, default=str))
        """, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    from optiinfra_tui.storage.metrics_schema import SCHEMA_VERSION

    assert SCHEMA_VERSION >= 2
    assert out["version"] == out["reopened"] == out["fresh_version"] == SCHEMA_VERSION
    # Old rows intact, to the cent, read by today's queries and by the first release's.
    assert _exact(out["opened"]) == _exact(out["v1_totals"]) == expected
    assert out["known"] == ["100"]
    assert out["sources"] == [["inv:100:0", ""], ["inv:100:1", ""], ["inv:100:2", ""],
                              ["pending:2025-03:0", ""]]
    # A new insert works, fills the new column, and March's invoice replaces its estimate.
    assert _exact(out["written"]) == [Decimal("32.58"), 0, 4]
    assert out["new_source"] == ["invoice"]
    # The upgraded store has exactly the columns, types and defaults of a new one.
    assert out["upgraded"] == out["fresh"]
    assert ["source", "LowCardinality(String)", "", ""] in out["upgraded"]["cost_lines"]


def test_schema_steps_applied_at_once_by_several_openers_all_succeed(tmp_path):
    # Processes opening one server at the same time each apply the missing steps: every step
    # is idempotent. chDB is one process, so threads stand in for them here.
    result = _run(f"""
        import json, threading
        from optiinfra_tui.storage.metrics import open_metrics
        s = open_metrics("chdb://{tmp_path / 'db'}")
        s._command("ALTER TABLE optiinfra.cost_lines DROP COLUMN source")  # back to version 1
        s._command("TRUNCATE TABLE optiinfra.schema_version")
        barrier, results = threading.Barrier(4), []
        def open_at_once():
            barrier.wait()
            try:
                results.append(s._migrate())
            except Exception as exc:
                results.append(repr(exc))
        threads = [threading.Thread(target=open_at_once) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        names = [c[0] for c in s._rows("DESCRIBE TABLE optiinfra.cost_lines")]
        print(json.dumps([results, names.count("source"), s.count_rows("schema_version")]))
        """, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    from optiinfra_tui.storage.metrics_schema import MIGRATIONS, SCHEMA_VERSION

    results, columns, versions = json.loads(result.stdout)
    assert results == [SCHEMA_VERSION] * 4 and columns == 1
    assert versions == len(MIGRATIONS)  # each step recorded once
