"""Seeds a PostgreSQL history with millions of runs through COPY, as 10,000 customers make them.

Not through the app: rows are written as COPY text straight into collection_runs and
run_attempts (the schema the app made), with the secondary indexes dropped for the load and
rebuilt after it, as a bulk load would be done by hand. Every 15-minute slot holds one run per
customer, newest slot last, so ids follow time as they do in production.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

RUN_COLUMNS = ("id", "task_id", "customer_id", "provider", "data_types", "trigger", "status",
               "attempt", "max_attempts", "metrics_collected", "error_kind", "error_message",
               "queued_at", "started_at", "finished_at", "duration_ms", "worker",
               "next_attempt_at", "retry_of", "schedule", "requests")
ATTEMPT_COLUMNS = ("run_id", "attempt", "status", "worker", "started_at", "finished_at",
                   "duration_ms", "rows", "error_kind", "error_message")
SLOT = timedelta(minutes=15)
NULL = "\\N"
ERRORS = (("transient", "Vultr answered 503 Service Unavailable (gave up after 3 attempts)"),
          ("auth", "Vultr refused the API key (401): check VULTR_API_KEY for this customer"),
          ("transient", "Read timed out after 30 s"),
          ("data", "Vultr answered a page that does not parse: missing 'meta'"))
TYPES = {"vultr": "cost,account,resource", "aws": "cost", "azure": "cost", "gcp": "cost"}


def customer(i: int) -> str:
    return f"cust-{i:05d}"


def provider_of(i: int) -> str:
    """Seven customers in ten on Vultr, one each on AWS, Azure and GCP."""
    return {7: "aws", 8: "azure", 9: "gcp"}.get(i % 10, "vultr")


def _ts(t: datetime) -> str:
    return t.isoformat(sep=" ")


def generate(n: int, customers: int, now: datetime, chunk: int = 200_000, seed: int = 1
             ) -> Iterator[tuple[str, str]]:
    """COPY text for n runs ending at `now`, and for their attempts, `chunk` runs at a time."""
    rng = random.Random(seed)
    slots = -(-n // customers)
    # The newest slot began 10 minutes ago: its fan-out is queued, and 200 runs are still going.
    first_slot = now.replace(second=0, microsecond=0) - timedelta(minutes=10) - SLOT * slots
    runs: list[str] = []
    attempts: list[str] = []
    for run_id in range(1, n + 1):
        s, c = divmod(run_id - 1, customers)
        slot = first_slot + SLOT * (s + 1)
        runs.append(_run_line(run_id, c, slot, rng, attempts,
                              in_progress=s == slots - 1 and c < 200))
        if len(runs) >= chunk:
            yield "".join(runs), "".join(attempts)
            runs.clear()
            attempts.clear()
    if runs:
        yield "".join(runs), "".join(attempts)


def _run_line(run_id: int, c: int, slot: datetime, rng: random.Random, attempts: list[str],
              in_progress: bool) -> str:
    prov = provider_of(c)
    queued = slot + timedelta(milliseconds=c * 25)  # the fan-out queues every customer in 250 s
    started = queued + timedelta(milliseconds=rng.randint(5, 60_000))
    took = rng.randint(300, 5_000)
    roll = rng.random()
    if in_progress:
        status = ("running", "queued", "retrying")[c % 3]
    elif roll < 0.07:
        status = "failed"
    elif roll < 0.08:
        status = "canceled"
    else:
        status = "success"
    worker = f"host-{c % 8}:{1000 + c % 8}:Worker-{c % 64 + 1}"
    kind = msg = None
    rows = 0
    tries = 1
    finished = started + timedelta(milliseconds=took)
    next_at = None
    if status == "success":
        rows = rng.randint(5, 500)
    elif status == "failed":
        kind, msg = ERRORS[rng.randrange(len(ERRORS))]
        tries = 3 if kind == "transient" else 1
    elif status == "canceled":
        kind, msg, tries, worker = "canceled", "Revoked by the user before it ran.", 0, None
        finished = queued + timedelta(seconds=2)
    elif status == "running":
        finished = None
    elif status == "queued":
        tries, worker, finished, started = 0, None, None, None
    else:  # retrying
        kind, msg = ERRORS[0]
        finished, next_at = None, queued + timedelta(minutes=2)
    retry_of = run_id - 9_000 if rng.random() < 0.001 and run_id > 9_000 else None
    trigger = "retry" if retry_of else "schedule"
    for a in range(1, tries + 1):
        a_status = status if a == tries else "retrying"
        a_start = started + timedelta(seconds=60 * (a - 1)) if started else None
        a_end = None if finished is None else a_start + timedelta(milliseconds=took // tries)
        attempts.append("\t".join((
            str(run_id), str(a), "running" if a_status == "running" else a_status,
            worker or NULL, _ts(a_start) if a_start else NULL, _ts(a_end) if a_end else NULL,
            str(took // tries) if a_end else NULL, str(rows if a == tries else 0),
            kind or NULL, msg or NULL)) + "\n")
    return "\t".join((
        str(run_id), f"{run_id:08x}-{c:05d}", customer(c), prov, TYPES[prov], trigger, status,
        str(tries), "3", str(rows), kind or NULL, msg or NULL, _ts(queued),
        _ts(started) if started else NULL, _ts(finished) if finished else NULL,
        str(took) if finished else NULL, worker or NULL, _ts(next_at) if next_at else NULL,
        str(retry_of) if retry_of else NULL, NULL if trigger == "retry" else "vultr-cost",
        "1")) + "\n"


def secondary_indexes(cur, table: str) -> list[tuple[str, str]]:
    """(name, CREATE statement) of every index on `table` but its primary key."""
    cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s "
                "AND indexname NOT LIKE %s", (table, "%_pkey"))
    return cur.fetchall()


def seed(dsn: str, n: int, customers: int, now: datetime, log=print) -> dict[str, float]:
    """COPY n runs and their attempts into the history at `dsn` (tables made by the app);
    returns seconds per phase."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    timings: dict[str, float] = {}
    indexes = {t: secondary_indexes(cur, t) for t in ("collection_runs", "run_attempts")}
    for table, found in indexes.items():
        for name, _ in found:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute(f"TRUNCATE {table}")
    t0 = time.perf_counter()
    copy_runs = f"COPY collection_runs ({', '.join(_q(c) for c in RUN_COLUMNS)}) FROM STDIN"
    copy_attempts = f"COPY run_attempts ({', '.join(_q(c) for c in ATTEMPT_COLUMNS)}) FROM STDIN"
    for runs, attempts in generate(n, customers, now):
        cur.copy_expert(copy_runs, io.StringIO(runs))
        cur.copy_expert(copy_attempts, io.StringIO(attempts))
    timings["copy"] = time.perf_counter() - t0
    cur.execute("SELECT count(*) FROM run_attempts")
    log(f"  copied {n:,} runs and {cur.fetchone()[0]:,} attempts in {timings['copy']:.0f} s")
    for table in ("collection_runs", "run_attempts"):
        cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))")
    t0 = time.perf_counter()
    cur.execute("SET maintenance_work_mem = '512MB'")
    for found in indexes.values():
        for _, create in found:
            cur.execute(create)
    timings["indexes"] = time.perf_counter() - t0
    log(f"  rebuilt {sum(map(len, indexes.values()))} indexes in {timings['indexes']:.0f} s")
    t0 = time.perf_counter()
    cur.execute("VACUUM (ANALYZE) collection_runs")
    cur.execute("VACUUM (ANALYZE) run_attempts")
    timings["vacuum"] = time.perf_counter() - t0
    conn.close()
    return timings


def _q(column: str) -> str:
    return f'"{column}"'
