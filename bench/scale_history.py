"""Ten million runs of history in PostgreSQL: what the dashboard, `status` and `history` cost.

    python bench/scale_history.py [--runs 10000000] [--customers 10000] [--rounds 5]
                                  [--explain plans.txt]

Starts its own PostgreSQL (tests/services.py's, in a temp dir) and Redis, makes the schema
through the app, seeds the runs with COPY (bench/_history_seed.py: 10,000 customers x one run
per 15-minute slot, ~10 days, attempts included), then measures through the app's own code:
each history window and filter the dashboard asks for, the last hour's stats, one poll of the
dashboard's state, a run's detail, `status` and `history` as processes, the dashboard's first
frame and page moves through Pilot, the migration that adds this release's indexes on the
populated table, and pruning a day's runs while a worker writes. Every read's SQL is
EXPLAIN ANALYZEd (--explain writes the plans). Medians of --rounds; prints figures, asserts
nothing. Takes 15-30 minutes (the seed most of it) and ~6 GB of disk at 10 million runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Postgres, Redis, figure, machine, save_results, tempdir  # noqa: E402
from _history_seed import customer, seed  # noqa: E402

# name: (target in ms, or None when only reported)
TARGETS = {
    "history, newest 100": 30, "history, next 100 (keyset)": 30,
    "history, 100 runs half-way down": 30, "filter: one customer": 200,
    "filter: status failed": 200, "filter: status canceled": 200,
    "filter: status running": 200, "filter: customer + failed": 200,
    "filter: provider gcp + canceled": 200, "filter: text 'timed out'": None,
    "last-hour stats": 100, "dashboard poll (state + window)": None, "run detail": None,
    "`status` (process)": 1000, "`history` (process)": 1000,
    "`history --customer --status` (process)": 1000,
}
EXE = str(Path(sys.executable).parent / "optiinfra-tui")


def timed(fn: Callable, rounds: int) -> list[float]:
    """Milliseconds per call, after one warm-up call."""
    fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def statements(fn: Callable) -> list[tuple[str, tuple]]:
    """The SELECTs `fn` sends through peewee, in order."""
    from optiinfra_tui.storage import history

    database, seen = history.db.obj, []
    original = database.execute_sql

    def spy(sql, params=None, *args, **kwargs):
        if sql.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((sql, tuple(params or ())))
        return original(sql, params, *args, **kwargs)

    database.execute_sql = spy
    try:
        fn()
    finally:
        del database.execute_sql
    return seen


def explain(dsn: str, sql: str, params: tuple) -> list[str]:
    import psycopg2

    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        return [row[0] for row in cur.fetchall()]


def plan_summary(plan: list[str]) -> str:
    """The scans a plan makes and its execution time, on one line."""
    scans = [line.strip().lstrip("-> ").split("  (")[0] for line in plan
             if "Scan" in line and "->" in line or line.lstrip().startswith(("Seq", "Index"))]
    ms = next((line.split(":")[1].strip() for line in plan if "Execution Time" in line), "?")
    return f"{'; '.join(dict.fromkeys(scans)) or plan[0].split('  (')[0]} [{ms}]"


def reads(rt, n: int, now) -> dict[str, Callable]:
    """What the dashboard, `status` and `history` read, as calls into the app."""
    from optiinfra_tui.tui.source import HistoryFilter, HistoryQuery, Source
    from optiinfra_tui.worker import monitor

    src = Source(rt, clock=lambda: now)
    first = src.history(HistoryQuery())
    q = HistoryQuery

    def page(**flt) -> Callable:
        return lambda: src.history(q(HistoryFilter(**flt)))

    return {
        "history, newest 100": lambda: src.history(q()),
        "history, next 100 (keyset)": lambda: src.history(q(before_id=first.rows[-1].id,
                                                            page=1)),
        "history, 100 runs half-way down": lambda: src.history(q(before_id=n // 2, page=1)),
        "filter: one customer": page(customer_id=customer(4242)),
        "filter: status failed": page(status="failed"),
        "filter: status canceled": page(status="canceled"),
        "filter: status running": page(status="running"),
        "filter: customer + failed": page(customer_id=customer(4242), status="failed"),
        "filter: provider gcp + canceled": page(provider="gcp", status="canceled"),
        "filter: text 'timed out'": page(text="timed out"),
        "last-hour stats": lambda: monitor.stats(now=now),
        "dashboard poll (state + window)": lambda: (src.state([]), src.history(q())),
        "run detail": lambda: src.detail(n - 20_000),
    }


def cli_times(env: dict, rounds: int) -> dict[str, list[float]]:
    out = {}
    for name, args in (("`status` (process)", ["status"]),
                       ("`history` (process)", ["history"]),
                       ("`history --customer --status` (process)",
                        ["history", "--customer", customer(4242), "--status", "failed"])):
        times = []
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            proc = subprocess.run([EXE, *args], env=env, capture_output=True, text=True)
            times.append((time.perf_counter() - t0) * 1000)
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"{args}: exit {proc.returncode}: {proc.stderr}")
        out[name] = times[1:]
    return out


# A worker process's history writes in a loop (queued, started, finished), each one timed.
WRITER = """
import os, sys, time
from optiinfra_tui.storage import history
from optiinfra_tui.worker import runs
history.connect(sys.argv[1])
with open(sys.argv[3], "w") as out:
    while not os.path.exists(sys.argv[2]):
        t0 = time.time()
        run = runs.create_run("cust-00007", "vultr", ["cost"], "schedule", 3)
        t1 = time.time()
        run = runs.start_attempt(run.id, "bench:1:Worker-1")
        t2 = time.time()
        runs.finish_success(run, 10)
        t3 = time.time()
        out.write(f"{t1} {(t1 - t0) * 1000}\\n{t2} {(t2 - t1) * 1000}\\n{t3} {(t3 - t2) * 1000}\\n")
        out.flush()
        time.sleep(0.005)
"""


class Writer:
    """WRITER in a process of its own, as a worker is: its writes' latencies by wall time."""

    def __init__(self, url: str, home: Path) -> None:
        self.url, self.stop_file, self.out = url, home / "writer.stop", home / "writer.txt"
        self.latencies: list[tuple[float, float]] = []  # (when, ms)

    def start(self) -> Writer:
        self.stop_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, self.url,
                                      str(self.stop_file), str(self.out)])
        return self

    def stop(self) -> None:
        self.stop_file.touch()
        self.proc.wait(60)
        self.latencies = [tuple(map(float, line.split())) for line in
                          self.out.read_text().splitlines() if line.strip()]

    def during(self, t0: float, t1: float) -> list[float]:
        return [ms for when, ms in self.latencies if t0 <= when <= t1]


class LockWatch:
    """Samples PostgreSQL every 5 ms for backends waiting on a lock; keeps the longest wait."""

    def __init__(self, dsn: str) -> None:
        self.dsn, self.longest_ms = dsn, 0.0
        self.waiter = self.blocker = ""  # the longest wait's statement, and its blocker's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-locks", daemon=True)

    def _run(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            while not self._stop.is_set():
                cur.execute("SELECT extract(epoch FROM clock_timestamp() - w.state_change) "
                            "* 1000, w.query, b.query FROM pg_stat_activity w "
                            "LEFT JOIN pg_stat_activity b ON b.pid = "
                            "(pg_blocking_pids(w.pid))[1] WHERE w.wait_event_type = 'Lock' "
                            "AND w.pid <> pg_backend_pid() ORDER BY 1 DESC LIMIT 1")
                found = cur.fetchone()
                if found and float(found[0]) > self.longest_ms:
                    self.longest_ms = float(found[0])
                    self.waiter, self.blocker = (" ".join((q or "").split())[:120]
                                                 for q in found[1:])
                time.sleep(0.005)
        conn.close()

    def __enter__(self) -> LockWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def under_writes(fn: Callable, url: str, home: Path, dsn: str | None = None,
                 prepare: Callable[[], object] | None = None) -> dict:
    """Run fn while a worker process writes to the history at `url`: fn's seconds, the
    writes' latencies meanwhile, and (PostgreSQL) the longest any backend waited on a lock.
    `prepare` runs once the worker writes (it has connected, and so migrated, by then)."""
    writer = Writer(url, home).start()
    time.sleep(3)
    if prepare is not None:
        prepare()
        time.sleep(1)
    base_start, base_end = time.time() - 2, time.time()
    watch = LockWatch(dsn) if dsn else None
    if watch:
        watch.__enter__()
    t0 = time.time()
    try:
        result = fn()
    finally:
        t1 = time.time()
        if watch:
            watch.__exit__()
    time.sleep(0.5)
    writer.stop()
    base = writer.during(base_start, base_end)
    during = writer.during(t0, t1 + 0.2)
    return {"seconds": t1 - t0, "result": result, "writes": len(during),
            "write_max_ms": max(during, default=0.0),
            "write_p99_ms": sorted(during)[int(0.99 * (len(during) - 1))] if during else 0.0,
            "write_median_ms": statistics.median(during) if during else 0.0,
            "baseline_max_ms": max(base, default=0.0),
            "lock_wait_max_ms": watch.longest_ms if watch else None,
            "lock_waiter": watch.waiter if watch else "",
            "lock_blocker": watch.blocker if watch else ""}


def migration_figures(dsn: str, home: Path) -> dict | None:
    """Time the migration to this release's indexes on the populated table while a worker
    writes: once the worker runs, the history is put back to the version before the index
    step (without the indexes it adds, with those it drops) and migrated again."""
    from optiinfra_tui.storage import history

    if not hasattr(history, "INDEXES_STEP"):
        return None  # a release before the index migration
    import psycopg2

    def back_to_version_2() -> None:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in history.INDEXES_ADDED:
                cur.execute(f"DROP INDEX IF EXISTS {name}")
            for name, target in history.INDEXES_DROPPED.items():
                cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
            cur.execute("UPDATE schema_version SET version = %s", (history.INDEXES_STEP - 1,))
        conn.close()

    return under_writes(lambda: history.migrate(history.db.obj), dsn, home, dsn,
                        prepare=back_to_version_2)


def prune_figures(keep_days: int, url: str, home: Path, dsn: str | None = None) -> dict:
    """Prune the oldest day of runs (now moved on so that exactly one day is past keep_days)."""
    from optiinfra_tui.storage.history import CollectionRun
    from optiinfra_tui.worker import runs

    oldest = CollectionRun.select(CollectionRun.finished_at).where(
        CollectionRun.finished_at.is_null(False)).order_by(CollectionRun.finished_at).first()
    later = oldest.finished_at + timedelta(days=1 + keep_days)
    return under_writes(lambda: runs.prune(keep_days, later), url, home, dsn)


def sqlite_prune_figures(home: Path, n: int, customers: int, keep_days: int) -> dict:
    """The same prune on SQLite (embedded mode), where a write transaction locks the whole
    database: n runs of `customers` customers, seeded with executemany from the same lines."""
    from _history_seed import ATTEMPT_COLUMNS, RUN_COLUMNS, generate

    from optiinfra_tui.storage import history
    from optiinfra_tui.storage.history import utcnow

    url = f"sqlite:///{home}/history.db"
    history.connect(url)
    conn = history.db.obj.connection()

    def rows(text: str) -> list[tuple]:
        return [tuple(None if v == "\\N" else v for v in line.split("\t"))
                for line in text.splitlines()]

    with history.db.atomic():
        for table in ("collection_runs", "run_attempts"):
            conn.execute(f"DELETE FROM {table}")
        for runs_text, attempts_text in generate(n, customers, utcnow()):
            for table, columns, text in (("collection_runs", RUN_COLUMNS, runs_text),
                                         ("run_attempts", ATTEMPT_COLUMNS, attempts_text)):
                conn.executemany(
                    f"INSERT INTO {table} ({', '.join(f'{c!r}' for c in columns)}) "
                    f"VALUES ({', '.join('?' * len(columns))})", rows(text))
    conn.execute("ANALYZE")
    return prune_figures(keep_days, url, home)


def dashboard_figures(rt, moves: int) -> dict:
    from bench_dashboard import first_frame

    first, windows, _ = asyncio.run(first_frame(rt, paging=moves))
    return {"first_frame_ms": first * 1000, "window_ms": [w * 1000 for w in windows]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--explain", type=Path, help="write every read's EXPLAIN ANALYZE here")
    ap.add_argument("--no-dashboard", action="store_true",
                    help="skip the Pilot figures (they need this tree's tests/ helpers)")
    ap.add_argument("--sqlite-runs", type=int, default=1_000_000,
                    help="runs (of 1,000 customers) for the same prune on SQLite; 0: skip")
    args = ap.parse_args(argv)
    print(f"history at scale: {args.runs:,} runs, {args.customers:,} customers; {machine()}",
          flush=True)
    from optiinfra_tui.settings import load_settings
    from optiinfra_tui.storage.history import utcnow
    from optiinfra_tui.worker.runtime import Runtime

    pg, redis = Postgres(), Redis().start()
    home = tempdir("bench-scale-history-")
    results: dict = {"runs": args.runs, "customers": args.customers, "reads": {}, "plans": {}}
    try:
        dsn = pg.start("optiinfra_scale")
        config = home / "config.toml"
        config.write_text('[[schedules]]\nname = "vultr-cost"\ndata_types = ["cost"]\n'
                          'interval = 900\n')
        env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "VULTR_API_KEY")}
        env.update(OPTIINFRA_HOME=str(home / "home"), OPTIINFRA_CONFIG=str(config),
                   DATABASE_URL=dsn, REDIS_URL=redis.url(), PROVIDER_CHECK_INTERVAL="0")
        rt = Runtime(load_settings(env))
        rt.history()  # the app makes its schema; the seed fills it
        now = utcnow()
        t0 = time.perf_counter()
        results["seed"] = seed(dsn, args.runs, args.customers, now)
        print(f"seeded in {time.perf_counter() - t0:.0f} s", flush=True)

        plans = []
        for name, fn in reads(rt, args.runs, now).items():
            results["reads"][name] = timed(fn, args.rounds)
            found = [explain(dsn, sql, params) for sql, params in statements(fn)]
            results["plans"][name] = [plan_summary(p) for p in found]
            plans += [f"== {name}\n" + "\n".join(p) for p in found]
            show(name, results["reads"][name], "; ".join(results["plans"][name]))
        if args.explain:
            args.explain.write_text("\n\n".join(plans) + "\n")
        for name, times in cli_times(env, args.rounds).items():
            results["reads"][name] = times
            show(name, times)

        if not args.no_dashboard:
            dash = dashboard_figures(rt, moves=10)
            results["dashboard"] = dash
            figure("dashboard first frame (Pilot, to the history)",
                   f"{dash['first_frame_ms']:.0f} ms", "<= 2 s", dash["first_frame_ms"] <= 2000)
            med = statistics.median(dash["window_ms"])
            figure("dashboard: next page of 100 (Pilot)", f"{med:.1f} ms median, max "
                   f"{max(dash['window_ms']):.0f}", "<= 30 ms", med <= 30)

        mig = migration_figures(dsn, home)
        if mig is not None:
            results["migration"] = {k: v for k, v in mig.items() if k != "result"}
            figure("migration: this release's indexes, populated table",
                   f"{mig['seconds']:.0f} s; a worker's writes meanwhile max "
                   f"{mig['write_max_ms']:.0f} ms (before it {mig['baseline_max_ms']:.0f}); "
                   f"longest lock wait {mig['lock_wait_max_ms']:.0f} ms")
        pr = prune_figures(rt.settings.keep_days, dsn, home, dsn)
        results["prune"] = {k: v for k, v in pr.items() if k != "result"}
        results["prune"]["deleted"] = pr["result"]
        show_prune("PostgreSQL", pr)
        if args.sqlite_runs:
            lite = sqlite_prune_figures(home, args.sqlite_runs, 1000, rt.settings.keep_days)
            results["prune_sqlite"] = {k: v for k, v in lite.items() if k != "result"}
            results["prune_sqlite"]["deleted"] = lite["result"]
            show_prune("SQLite", lite)
    finally:
        from optiinfra_tui.storage.history import close_connection

        close_connection()
        redis.stop()
        pg.stop()
        shutil.rmtree(home, ignore_errors=True)
    save_results("scale_history", results)
    return results


def show_prune(where: str, pr: dict) -> None:
    locks = "" if pr["lock_wait_max_ms"] is None else \
        f"; longest lock wait {pr['lock_wait_max_ms']:.0f} ms"
    if pr.get("lock_waiter"):
        locks += f" ({pr['lock_waiter']!r} behind {pr['lock_blocker']!r})"
    figure(f"{where}: prune a day ({pr['result']:,} runs)",
           f"{pr['seconds']:.0f} s; writes meanwhile: {pr['writes']}, median "
           f"{pr['write_median_ms']:.1f} ms, p99 {pr['write_p99_ms']:.0f}, max "
           f"{pr['write_max_ms']:.0f} ms{locks}", "write max <= 100 ms",
           pr["write_max_ms"] <= 100)


def show(name: str, times: list[float], plan: str = "") -> None:
    target = TARGETS.get(name)
    med = statistics.median(times)
    figure(name, f"{med:7.1f} ms median, max {max(times):7.1f}",
           f"<= {target} ms" if target else "", med <= target if target else None)
    if plan:
        print(f"      {plan}", flush=True)


def readme_rows(results: dict) -> list[tuple]:
    """Rows for bench/run.py's README table: (figure, ours, peers, target, met)."""
    runs = f"{results['runs'] / 1e6:g}M runs"
    rows = []
    for name, times in results.get("reads", {}).items():
        target = TARGETS.get(name)
        med = statistics.median(times)
        rows.append((f"History at {runs}: {name}", f"{med:.1f} ms", "",
                     f"<= {target} ms" if target else "report",
                     med <= target if target else None))
    dash = results.get("dashboard")
    if dash:
        med = statistics.median(dash["window_ms"])
        rows.append((f"History at {runs}: dashboard first frame (Pilot)",
                     f"{dash['first_frame_ms']:.0f} ms", "", "<= 2 s",
                     dash["first_frame_ms"] <= 2000))
        rows.append((f"History at {runs}: dashboard, next page of 100 (Pilot)",
                     f"{med:.1f} ms", "", "<= 30 ms", med <= 30))
    mig = results.get("migration")
    if mig:
        rows.append((f"History at {runs}: migration adding the indexes",
                     f"{mig['seconds']:.0f} s, writes meanwhile max {mig['write_max_ms']:.0f} ms",
                     "", "report", None))
    for key, where in (("prune", f"History at {runs}"), ("prune_sqlite", "History on SQLite")):
        pr = results.get(key)
        if pr:
            locks = "" if pr.get("lock_wait_max_ms") is None else \
                f", longest lock wait {pr['lock_wait_max_ms']:.0f} ms"
            rows.append((f"{where}: a worker's write while a day ({pr['deleted']:,} runs) is "
                         "pruned", f"max {pr['write_max_ms']:.0f} ms, p99 "
                         f"{pr['write_p99_ms']:.0f} ms{locks} (prune {pr['seconds']:.0f} s)",
                         "", "<= 100 ms", pr["write_max_ms"] <= 100))
    return rows


if __name__ == "__main__":
    main()
