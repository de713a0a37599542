"""Embedded mode: a keypress (enqueue from the host thread) to task start, SQLite queue.

    python bench/embedded_latency.py [--rounds 3] [--samples 10]

The dashboard's process in miniature: SqliteHuey, SQLite history, the EmbeddedConsumer's 2
worker threads and the heartbeating agent, all in this process. Each keypress is
actions.collect (what `c` calls) for a no-op provider, sent once every worker has backed off
to its longest idle poll (1 s), at a random point of that poll's sleep.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _queue_workers as workers  # noqa: E402
from _common import figure, fmt, machine, percentile, save_results, tempdir, wait_until  # noqa: E402

TARGET_P99_MS = 100.0


def backed_off(consumer) -> bool:
    """Every worker's next idle sleep is the longest one."""
    return all(w.delay >= w.max_delay for w, _ in consumer.worker_threads)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10, help="keypresses per round")
    args = parser.parse_args(argv)

    for var in ("REDIS_URL", "REDIS_HOST", "DATABASE_URL", "CLICKHOUSE_URL"):
        os.environ.pop(var, None)  # embedded: everything in the data dir
    home = tempdir("bench-embedded-")
    os.environ.update(OPTIINFRA_HOME=str(home), COLLECTION_INTERVAL="86400")

    from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING

    from optiinfra_tui.logs import setup_logging
    from optiinfra_tui.worker import actions
    from optiinfra_tui.worker.pool import WorkerPool
    from optiinfra_tui.worker.runtime import set_runtime

    rt = workers.ours_runtime()
    setup_logging(rt.settings)
    set_runtime(rt)
    rt.history()
    done: queue.Queue = queue.Queue()

    @rt.huey.signal(SIGNAL_EXECUTING)
    def on_executing(signal, task, *a):
        workers._local.picked = time.monotonic()

    @rt.huey.signal(SIGNAL_COMPLETE)
    def on_complete(signal, task, *a):
        info = getattr(workers._local, "started", None)
        workers._local.started = None
        if info is not None:
            done.put(info)

    pool = WorkerPool(rt, 2, "dashboard")
    pool.start()
    res: dict[str, list[float]] = {"p50_ms": [], "p99_ms": [], "pick_p50_ms": [],
                                   "pick_p99_ms": [], "max_ms": []}
    print(f"embedded keypress-to-start: {args.rounds} rounds of {args.samples} keypresses, "
          f"each after the workers backed off; {machine()}", flush=True)
    try:
        actions.collect(rt, "noop", data_types="ping")  # warm up: connections, imports
        done.get(timeout=30)
        for r in range(args.rounds):
            lat, pick = [], []
            for _ in range(args.samples):
                if not wait_until(lambda: backed_off(pool.consumer), timeout=60, interval=0.05):
                    raise RuntimeError("the workers never backed off")
                time.sleep(random.uniform(0, 1.0))  # anywhere within the 1 s idle sleep
                sent = time.monotonic()
                actions.collect(rt, "noop", data_types="ping")
                _, started, _, picked = done.get(timeout=30)
                lat.append((started - sent) * 1000)
                pick.append((picked - sent) * 1000)
            res["p50_ms"].append(percentile(lat, 50))
            res["p99_ms"].append(percentile(lat, 99))
            res["max_ms"].append(max(lat))
            res["pick_p50_ms"].append(percentile(pick, 50))
            res["pick_p99_ms"].append(percentile(pick, 99))
            print(f"  round {r + 1}: keypress-to-start p50 {res['p50_ms'][-1]:.2f} ms, p99 "
                  f"{res['p99_ms'][-1]:.2f} ms (pick-up p50 {res['pick_p50_ms'][-1]:.2f} ms)",
                  flush=True)
    finally:
        pool.stop(10)
        rt.close()
    print("results: median [min-max] over rounds", flush=True)
    figure("embedded: keypress-to-pickup p50", fmt(res["pick_p50_ms"], "ms"))
    figure("embedded: keypress-to-pickup p99", fmt(res["pick_p99_ms"], "ms"))
    figure("embedded: keypress-to-start p50", fmt(res["p50_ms"], "ms"))
    figure("embedded: keypress-to-start p99", fmt(res["p99_ms"], "ms"), "<= 100 ms",
           max(res["p99_ms"]) <= TARGET_P99_MS)
    save_results("embedded_latency", res)
    return res


if __name__ == "__main__":
    main()
