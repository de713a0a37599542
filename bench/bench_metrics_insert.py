"""Rows per second into chDB through MetricsStore.write, for synthetic invoice lines.

    python bench/bench_metrics_insert.py [--rows 200000] [--path /tmp/bench-chdb]

Each case writes to its own customer, so the cases don't replace each other's rows.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from optiinfra_tui.rows import COST_LINES, Batch, CostRow
from optiinfra_tui.storage.metrics import open_metrics


def synthetic(n: int, customer: str) -> list[CostRow]:
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = []
    for i in range(n):
        month = date(2024 + i // 120_000, i // 10_000 % 12 + 1, 1)
        start = datetime(month.year, month.month, 1) + timedelta(hours=i % 600)
        rows.append(CostRow(
            line_id=f"inv:{i // 1000}:{i % 1000}", customer_id=customer, provider_name="vultr",
            billing_account_id="acct-1", invoice_id=str(i // 1000),
            billed_cost=Decimal(f"{i % 1000}.{i % 97:02d}"), effective_cost=Decimal("1.5"),
            list_cost=Decimal(f"{i % 1000}.{i % 97:02d}"), list_unit_price=Decimal("0.00694444"),
            billing_currency="USD", charge_period_start=start,
            charge_period_end=start + timedelta(hours=1), billing_period=month,
            charge_category="Usage", charge_description=f"10.0.{i % 250}.{i % 200} (1024 MB)",
            service_name=("Compute", "Storage", "Bandwidth")[i % 3], resource_id=f"res-{i % 500}",
            resource_name=f"web-{i % 500}", region_id=("ewr", "ams", "sjc")[i % 3],
            pricing_quantity=Decimal(i % 744), pricing_unit="Hours", is_estimate=False, run_id=1,
            collected_at=now))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--path", default=None, help="chDB directory (default: a temp dir)")
    args = parser.parse_args()
    path = args.path or tempfile.mkdtemp(prefix="bench-chdb-")
    store = open_metrics(f"chdb://{path}")
    try:
        for label, size, buffered in (("batches of 500", 500, False),
                                      ("batches of 10000", 10_000, False),
                                      ("pages of 500 via buffered(10000)", 500, True)):
            customer = f"bench-{size}-{int(buffered)}-{time.time_ns()}"
            rows = synthetic(args.rows, customer)
            # A collector holds one page, not 200k rows: keep the rows out of the GC's scans.
            gc.collect()
            gc.freeze()
            start = time.perf_counter()
            if buffered:
                with store.buffered(10_000) as writer:
                    for i in range(0, len(rows), size):
                        writer.write(Batch(COST_LINES, rows[i:i + size]))
            else:
                for i in range(0, len(rows), size):
                    store.write(Batch(COST_LINES, rows[i:i + size]))
            elapsed = time.perf_counter() - start
            total = store.total(customer)
            assert total.rows == len(rows), total
            print(f"{label:>34}: {len(rows) / elapsed:>10,.0f} rows/s "
                  f"({len(rows):,} rows in {elapsed:.2f} s)")
            del rows
            gc.unfreeze()
        start = time.perf_counter()
        store.costs("provider")
        print(f"{'costs by provider (FINAL)':>34}: {time.perf_counter() - start:.3f} s over "
              f"{store.count_rows(COST_LINES):,} rows")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{'peak RSS':>34}: {rss:,.0f} MB")
    finally:
        store.close()


if __name__ == "__main__":
    main()
