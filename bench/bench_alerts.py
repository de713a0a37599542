"""What one look at the alerts' conditions costs (each consumer takes one every 5 s).

    python bench/bench_alerts.py [--runs 100000] [--streak 10000] [--customers 20]
                                 [--database-url postgresql://...]

A history of `--runs` runs over `--customers` customers, one of which has failed its last
`--streak` scheduled runs (an alert firing for ~100 days at 15-minute slots); three schedules,
two alerts, a live consumer. Prints the median and p95 of one pass; asserts nothing. On
PostgreSQL the table is analysed first, as autovacuum would after such an insert.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tui_data import FROZEN_NOW, _run, env_for  # noqa: E402

from optiinfra_tui.settings import load_settings  # noqa: E402
from optiinfra_tui.storage import history  # noqa: E402
from optiinfra_tui.storage.history import CollectionRun, WorkerHeartbeat, db  # noqa: E402
from optiinfra_tui.worker.alerts import Evaluator  # noqa: E402

SCHEDULES = "".join(f'[[schedules]]\nname = "{n}"\nprovider = "vultr"\ninterval = {i}\n\n'
                    for n, i in (("cost", 900), ("inventory", 3600), ("account", 86400)))
ALERTS = ('[[alerts]]\nname = "ops"\nurl_env = "OPS_URL"\n\n'
          '[[alerts]]\nname = "chat"\nurl_env = "CHAT_URL"\nformat = "slack"\nafter_failures = 5\n')


def seed(runs: int, streak: int, customers: list[str]) -> None:
    with db.atomic():
        rows = []
        for i in range(runs, 0, -1):  # oldest first
            customer = customers[i % len(customers)]
            failing = customer == customers[0] and i <= streak * len(customers)
            rows.append(_run(i, FROZEN_NOW, "failed" if failing else "success",
                             customer_id=customer, schedule="cost",
                             **({"error_kind": "auth", "error_message": "HTTP 401"}
                                if failing else {})))
            if len(rows) == 1000:
                CollectionRun.insert_many(rows).execute()
                rows = []
        if rows:
            CollectionRun.insert_many(rows).execute()
        WorkerHeartbeat.create(consumer_id="ops-1:4242", host="ops-1", pid=4242,
                               kind="headless", threads=2, beat_at=FROZEN_NOW)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--streak", type=int, default=10_000)
    ap.add_argument("--customers", type=int, default=20)
    ap.add_argument("--passes", type=int, default=50)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="optiinfra-bench-alerts-"))
    customers = ["default_customer"] + [f"c{k:03d}" for k in range(1, args.customers)]
    toml = SCHEDULES + ALERTS + "".join(
        f'[customers.{c}.vultr]\napi_key_env = "KEY_{c.upper()}"\n\n' for c in customers[1:])
    env = env_for(home, schedules=toml, OPS_URL="http://127.0.0.1:9/ops",
                  CHAT_URL="http://127.0.0.1:9/chat",
                  **({"DATABASE_URL": args.database_url} if args.database_url else {}))
    settings = load_settings(env)
    history.connect(settings.database_url)
    seed(args.runs, args.streak, customers)
    if settings.database_url.startswith("postgres"):
        # As autovacuum does after such an insert: the planner's row counts, without which
        # it reads a customer's runs through a bitmap of the whole table.
        db.execute_sql("ANALYZE collection_runs")
    evaluator = Evaluator(settings, "bench:1", FROZEN_NOW - timedelta(hours=1))
    fired = evaluator.run(FROZEN_NOW)  # the first pass claims; the others find it claimed
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        evaluator.run(FROZEN_NOW)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    backend = "postgresql" if settings.database_url.startswith("postgres") else "sqlite"
    print(f"alerts: one pass over {args.runs:,} runs, {len(customers)} customers, a streak of "
          f"{args.streak:,} failures ({backend}): median {statistics.median(times):.1f} ms, "
          f"p95 {times[int(0.95 * (len(times) - 1))]:.1f} ms; first pass claimed "
          f"{len(fired)} change(s)")


if __name__ == "__main__":
    main()
