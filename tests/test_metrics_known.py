"""An embedded store's known state (storage/known.py) and its merged inserts
(storage/coalesce.py) against real chDB: what it keeps equals what the store holds."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from test_metrics import AT, cost, ids, pending, store  # noqa: F401 (fixtures)

from optiinfra_tui.rows import COST_LINES, PENDING_CHARGES, Batch
from optiinfra_tui.storage.coalesce import Coalescer
from optiinfra_tui.storage.metrics_schema import TABLES, pivot


def reread(store, customer: str, provider: str):  # noqa: F811
    """The account as the database holds it, read afresh."""
    kept = store._known.pop(provider)
    try:
        return store._account(customer, provider)
    finally:
        store._known[provider] = kept


def same(store, ids):  # noqa: F811
    customer, provider = ids
    with store._write_lock:
        kept = store._account(customer, provider)
        assert kept == reread(store, customer, provider)


def test_what_an_embedded_store_keeps_is_what_it_holds(store, ids):  # noqa: F811
    customer, provider = ids
    assert store._known is not None  # chDB: this process is the only writer
    jan, feb, mar = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
    assert store.invoice_state(customer, provider) == (frozenset(), None)
    store.write(Batch(PENDING_CHARGES, [pending(ids, "0", "40", feb), pending(ids, "1", "2", mar)]))
    same(store, ids)
    store.write_cost_lines([
        cost(ids, "inv:9:0", "1", jan, invoice="9", end=datetime(2025, 2, 1)),
        cost(ids, "inv:10:0", "1", jan, invoice="10", end=datetime(2025, 2, 1)),
    ])
    same(store, ids)
    assert store.invoice_state(customer, provider) == (frozenset(), "10")
    store.mark_invoices_complete(customer, provider, ["9", "10"])
    same(store, ids)
    # February's invoice retires February's estimate.
    store.write_cost_lines([cost(ids, "inv:11:0", "41.11", feb, invoice="11")])
    same(store, ids)
    assert store.pending_estimate(customer) == Decimal("2")
    # A newer snapshot with other lines: the old ones are retired; the same one again and an
    # older one change nothing.
    later = AT + timedelta(minutes=15)
    newer = [pending(ids, "7", "3", mar, at=later), pending(ids, "8", "4", mar, at=later)]
    assert store.write(Batch(PENDING_CHARGES, newer)) == 2
    same(store, ids)
    assert store.write(Batch(PENDING_CHARGES, newer)) == 2
    same(store, ids)
    assert store.write(Batch(PENDING_CHARGES, [pending(ids, "0", "9", mar)])) == 0
    same(store, ids)
    assert store.pending_estimate(customer) == Decimal("7")
    store.write(Batch(PENDING_CHARGES, []), customer_id=customer, provider=provider,
                collected_at=later + timedelta(hours=1))
    same(store, ids)
    assert store.pending_estimate(customer) == 0


def test_a_write_it_does_not_model_makes_it_ask_the_store_again(store, ids):  # noqa: F811
    customer, provider = ids
    store.invoice_state(customer, provider)
    assert provider in store._known
    # Rows of another source (a cost API's window) are not modelled.
    store.write_cost_lines([cost(ids, "ce:1", "5", date(2025, 2, 1), source="cost_explorer")])
    assert provider not in store._known
    assert store.invoice_state(customer, provider) == (frozenset(), "100")


def test_inserts_of_many_threads_are_merged_and_all_stored(store, ids):  # noqa: F811
    customer, provider = ids
    calls, entered, gate = [], threading.Event(), threading.Event()

    def slow(table, columns):
        entered.set()
        gate.wait(10)
        calls.append(len(columns[0]))

    coalescer = Coalescer(slow)
    # While one insert is in flight, the others gather and go as one.
    threads = [threading.Thread(target=coalescer.insert, args=("t", [[i]])) for i in range(8)]
    threads[0].start()
    assert entered.wait(10)
    for t in threads[1:]:
        t.start()
    while len(coalescer._pending) < 7:
        threading.Event().wait(0.01)
    gate.set()
    for t in threads:
        t.join(10)
    assert calls == [1, 7]
    coalescer.close()

    # Through the store: every thread's lines are there, once.
    def write(n: int) -> None:
        rows = [cost(ids, f"inv:{n}:{k}", "1.01", invoice=str(n)) for k in range(3)]
        store.write_columns(COST_LINES, pivot(TABLES[COST_LINES], rows))

    workers = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert store.total(customer).billed_cost == Decimal("36.36")
    assert store.count_rows(COST_LINES, customer) == 36


def test_an_insert_that_fails_fails_every_run_it_held(store):  # noqa: F811
    def broken(table, columns):
        raise RuntimeError("disk full")

    coalescer = Coalescer(broken)
    with pytest.raises(RuntimeError, match="disk full"):
        coalescer.insert("t", [[1]])
    coalescer.close()
