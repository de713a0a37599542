"""Queue latency and throughput on one Redis: ours vs plain Huey vs Celery 5 (threads pool),
bare and with the history the stack we replace kept.

    python bench/queue_latency.py [--rounds 3] [--pings 2000] [--burst 10000]

Each system runs 2 worker threads in a worker process of its own; this process produces.
Latency: tasks sent one at a time, enqueue call to the start of the task's work. Throughput:
a burst of --burst tasks sent one call at a time, first enqueue to last completion. "ours" is
the product's collect_data_task through request_collection (run recorded queued in
PostgreSQL before the enqueue, its claim, provider check and end through the group-commit
writer, activity registry, heartbeating agent, EmbeddedConsumer) with a no-op provider;
"plain" is a bare RedisHuey task; "celery" a bare Celery task; "celery_history" a Celery task
that inserts a collection_history row in PostgreSQL when it starts and updates it when it
ends (the old stack's bookkeeping; its work starts after the insert, as ours after its claim).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _queue_workers as workers  # noqa: E402
from _common import (  # noqa: E402
    Postgres,
    Redis,
    cpu_seconds,
    figure,
    fmt,
    machine,
    percentile,
    save_results,
    tempdir,
    tree_cpu_seconds,
)

SYSTEMS = ("ours", "plain", "celery", "celery_history")
CELERY = ("celery", "celery_history")
TARGETS = {"p50_ms": 1.0, "p99_ms": 5.0, "vs_celery": 1.0, "vs_celery_history": 1.5}


class Producer:
    """Sends tasks of one system and reads the workers' reports."""

    def __init__(self, kind: str, reports: redis.Redis) -> None:
        self.kind = kind
        self.reports = reports
        self.seq = 0
        if kind == "ours":
            from optiinfra_tui.worker.collection import (
                FAN_OUT_CHUNK,
                request_collection,
                request_many,
            )

            self.rt = workers.ours_runtime()
            self.rt.history()
            customer = self.rt.settings.default_customer_id
            self.send = lambda mode: request_collection(self.rt, customer, "noop", mode,
                                                        trigger="api")
            # What a schedule's fan-out does: FAN_OUT_CHUNK runs per INSERT and per enqueue.
            self.send_chunk = lambda size: request_many(self.rt, [customer] * size, "noop",
                                                        ["burst"], trigger="schedule")
            self.chunk = FAN_OUT_CHUNK
        elif kind == "plain":
            _, noop = workers.plain_huey()
            self.send = lambda mode: noop(self._next(), mode)
        else:
            _, noop = (workers.celery_app() if kind == "celery"
                       else workers.celery_history_app())
            self.send = lambda mode: noop.apply_async((self._next(), mode))

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def ping(self, timeout: float = 30.0) -> tuple[float, float]:
        """Send one task and wait for it to end; seconds from enqueue to its work's start and
        to its pick-up (they differ for ours only: the attempt is recorded in between)."""
        sent = time.monotonic()
        self.send("ping")
        got = self.reports.blpop([f"bench:{self.kind}:ping"], timeout=timeout)
        if got is None:
            raise RuntimeError(f"{self.kind}: no report within {timeout} s")
        _, started, picked = got[1].split()
        return float(started) - sent, float(picked) - sent

    def burst(self, n: int, timeout: float = 300.0,
              fan_out: bool = False) -> tuple[float, float]:
        """Send n tasks at once, one call each (or through the fan-out's chunks); returns
        (tasks per second, enqueue seconds)."""
        start = time.monotonic()
        if fan_out:
            for done in range(0, n, self.chunk):
                self.send_chunk(min(self.chunk, n - done))
        else:
            for _ in range(n):
                self.send("burst")
        enqueued = time.monotonic() - start
        got = self.reports.blpop([f"bench:{self.kind}:burst"], timeout=timeout)
        if got is None:
            raise RuntimeError(f"{self.kind}: burst did not finish within {timeout} s")
        return n / (float(got[1]) - start), enqueued


def start_workers(env: dict, systems: tuple[str, ...]) -> dict[str, subprocess.Popen]:
    here = Path(__file__).resolve().parent
    procs = {}
    for kind in systems:
        procs[kind] = subprocess.Popen(
            [sys.executable, "-c", "import _queue_workers as w; w.main()", kind],
            cwd=here, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=open(Path(env["OPTIINFRA_HOME"]) / f"{kind}.err", "w"))
    return procs


def stop_workers(procs: dict[str, subprocess.Popen]) -> None:
    for kind, proc in procs.items():
        if kind in CELERY:
            proc.terminate()
        else:
            proc.stdin.close()
    for proc in procs.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pings", type=int, default=2000, help="one-at-a-time tasks per round")
    parser.add_argument("--burst", type=int, default=10000, help="tasks per burst")
    parser.add_argument("--only", choices=SYSTEMS, action="append",
                        help="run only these systems (repeatable)")
    args = parser.parse_args(argv)
    systems = tuple(args.only or SYSTEMS)

    home = tempdir("bench-queue-")
    server = Redis().start()
    pg = Postgres()
    env = dict(os.environ, BENCH_REDIS=f"redis://127.0.0.1:{server.port}",
               BENCH_BURST=str(args.burst), OPTIINFRA_HOME=str(home),
               REDIS_URL=server.url(workers.DBS["ours"]), DATABASE_URL=pg.start(),
               CLICKHOUSE_URL=f"chdb://{home / 'clickhouse'}", COLLECTION_INTERVAL="86400")
    os.environ.update(env)
    workers.create_history_table(env["DATABASE_URL"])
    procs = start_workers(env, systems)
    reports = redis.Redis.from_url(workers.redis_url(workers.REPORT_DB), socket_timeout=None)
    results: dict[str, dict[str, list[float]]] = {
        k: {"p50_ms": [], "p99_ms": [], "pick_p50_ms": [], "pick_p99_ms": [], "tps": [],
            "enqueue_s": [], "cpu": [], "tps_fan_out": []} for k in systems}
    # CPU per burst task, by process: where a task's cost goes (the machine has 2 cores).
    meters = {"worker": None, "producer": lambda: cpu_seconds(os.getpid()),
              "postgres": lambda: tree_cpu_seconds(pg.pid),
              "redis": lambda: cpu_seconds(server.proc.pid)}
    try:
        producers = {k: Producer(k, reports) for k in systems}
        for p in producers.values():  # wait for each worker, then warm it up
            p.ping(timeout=60)
            for _ in range(200):
                p.ping()
        print(f"queue latency and throughput: {args.rounds} rounds of {args.pings} one-at-a-"
              f"time tasks and a burst of {args.burst}, 2 worker threads each; {machine()}",
              flush=True)
        for r in range(args.rounds):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for kind in order:
                p = producers[kind]
                pings = [p.ping() for _ in range(args.pings)]
                lat = [start * 1000 for start, _ in pings]
                pick = [picked * 1000 for _, picked in pings]
                meters["worker"] = lambda pid=procs[kind].pid: tree_cpu_seconds(pid)
                before = {m: f() for m, f in meters.items()}
                tps, enq = p.burst(args.burst)
                cpu = {m: (f() - before[m]) * 1000 / args.burst for m, f in meters.items()}
                res = results[kind]
                res["p50_ms"].append(percentile(lat, 50))
                res["p99_ms"].append(percentile(lat, 99))
                res["pick_p50_ms"].append(percentile(pick, 50))
                res["pick_p99_ms"].append(percentile(pick, 99))
                res["tps"].append(tps)
                res["enqueue_s"].append(enq)
                res["cpu"].append(cpu)
                print(f"  round {r + 1} {kind:<14} p50 {res['p50_ms'][-1]:.3f} ms  p99 "
                      f"{res['p99_ms'][-1]:.3f} ms  {tps:.0f} tasks/s (enqueue {enq:.2f} s); "
                      "CPU ms/task: " + ", ".join(f"{m} {v:.3f}" for m, v in cpu.items()),
                      flush=True)
                if kind == "ours":
                    tps, enq = p.burst(args.burst, fan_out=True)
                    res["tps_fan_out"].append(tps)
                    print(f"  round {r + 1} ours, fan-out: {tps:.0f} tasks/s (enqueue "
                          f"{enq:.2f} s)", flush=True)
    finally:
        stop_workers(procs)
        server.stop()
        pg.stop()
    report(results)
    save_results("queue_latency", results)
    return results


def report(results: dict) -> None:
    print("results: median [min-max] over rounds", flush=True)
    for kind, res in results.items():
        figure(f"{kind}: enqueue-to-start p50", fmt(res["p50_ms"], "ms", 3),
               "<= 1 ms" if kind == "ours" else "",
               _med(res["p50_ms"]) <= TARGETS["p50_ms"] if kind == "ours" else None)
        figure(f"{kind}: enqueue-to-start p99", fmt(res["p99_ms"], "ms", 3),
               "<= 5 ms" if kind == "ours" else "",
               _med(res["p99_ms"]) <= TARGETS["p99_ms"] if kind == "ours" else None)
        if kind == "ours":
            figure("ours: enqueue-to-pickup p50 (before history)", fmt(res["pick_p50_ms"], "ms", 3))
            figure("ours: enqueue-to-pickup p99 (before history)", fmt(res["pick_p99_ms"], "ms", 3))
        figure(f"{kind}: burst throughput", fmt(res["tps"], "tasks/s", 0))
        if res["tps_fan_out"]:
            figure(f"{kind}: burst through the fan-out", fmt(res["tps_fan_out"], "tasks/s", 0))
        cpu = {m: _med([c[m] for c in res["cpu"]]) for m in res["cpu"][0]}
        figure(f"{kind}: CPU per burst task", ", ".join(f"{m} {v:.2f}" for m, v in cpu.items())
               + " ms")
    if "ours" not in results:
        return
    ours = _med(results["ours"]["tps"])
    for peer, target in (("celery", "vs_celery"), ("celery_history", "vs_celery_history")):
        if peer in results:
            ratio = ours / _med(results[peer]["tps"])
            figure(f"ours / {peer} throughput", f"{ratio:.2f}x", f">= {TARGETS[target]}x",
                   ratio >= TARGETS[target])
    if "plain" in results:
        figure("ours / plain huey throughput", f"{ours / _med(results['plain']['tps']):.0%}")


PEERS = (("plain", "Huey"), ("celery", "Celery"), ("celery_history", "Celery+history"))


def readme_rows(results: dict) -> list[tuple]:
    """Rows for bench/run.py's README table: (figure, ours, peers, target, met)."""
    ours = results.get("ours")
    if not ours:
        return []

    def peers(key: str, fmt: str) -> str:
        return ", ".join(f"{label} {fmt.format(_med(results[k][key]))}"
                         for k, label in PEERS if k in results)

    def cpu(kind: str) -> float:
        return sum(_med([c[m] for c in results[kind]["cpu"]]) for m in results[kind]["cpu"][0])

    p50, p99, tps = _med(ours["p50_ms"]), _med(ours["p99_ms"]), _med(ours["tps"])
    rows = [
        ("Redis queue, enqueue to task start, p50 (pick-up)",
         f"{p50:.2f} ms ({_med(ours['pick_p50_ms']):.2f} ms)", peers("p50_ms", "{:.2f} ms"),
         "<= 1 ms", p50 <= TARGETS["p50_ms"]),
        ("Redis queue, enqueue to task start, p99 (pick-up)",
         f"{p99:.2f} ms ({_med(ours['pick_p99_ms']):.2f} ms)", peers("p99_ms", "{:.2f} ms"),
         "<= 5 ms", p99 <= TARGETS["p99_ms"])]
    for peer, label, target in (("celery_history", "Celery with history", "vs_celery_history"),
                                ("celery", "bare Celery", "vs_celery")):
        if peer in results:
            ratio = tps / _med(results[peer]["tps"])
            rows.append((f"Redis queue, burst throughput vs {label} (one call per task)",
                         f"{tps:,.0f} tasks/s", f"{_med(results[peer]['tps']):,.0f} tasks/s "
                         f"({ratio:.2f}x)", f">= {TARGETS[target]}x", ratio >= TARGETS[target]))
    if ours.get("tps_fan_out"):
        rows.append(("Redis queue, burst through the fan-out (500 runs per INSERT and enqueue)",
                     f"{_med(ours['tps_fan_out']):,.0f} tasks/s", "", "report", None))
    rows.append(("Redis queue, CPU per burst task (worker + producer + PostgreSQL + Redis)",
                 f"{cpu('ours'):.2f} ms", ", ".join(
                     f"{label} {cpu(k):.2f} ms" for k, label in PEERS if k in results),
                 "report", None))
    return rows


def _med(values: list[float]) -> float:
    import statistics

    return statistics.median(values)


if __name__ == "__main__":
    main()
