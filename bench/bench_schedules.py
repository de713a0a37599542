"""What a schedule's next run and current slot cost per call (the dashboard asks every second).

    python bench/bench_schedules.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta

from optiinfra_tui.settings import Schedule
from optiinfra_tui.worker.schedules import current_slot, next_run

CRONS = {
    "every 15 minutes": "*/15 * * * *",
    "nightly": "0 2 * * *",
    "monthly": "0 2 1 * *",
    "yearly": "0 3 1 1 *",
    "13th or Friday": "0 0 13 * 5",
}


def per_call_us(fn, schedule: Schedule, calls: int) -> float:
    """Median over 5 rounds of the mean cost of one call, in microseconds."""
    start = datetime(2026, 3, 14, 9, 26, 53)
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(calls):
            fn(schedule, start + timedelta(seconds=i))
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    for label, cron in CRONS.items():
        schedule = Schedule(label, "vultr", ("cost",), cron=cron)
        print(f"{label:<18} {cron:<14} next_run {per_call_us(next_run, schedule, args.calls):7.1f} us"
              f"   current_slot {per_call_us(current_slot, schedule, args.calls):7.1f} us")


if __name__ == "__main__":
    main()
