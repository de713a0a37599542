"""What chDB's own settings trim from an embedded process's memory, and what they cost.

    python bench/chdb_settings.py [--rounds 3] [--lines 100000]

Each variant is one process that opens chDB with storage/clickhouse.py's CHDB_OPTIONS
replaced by the variant's, collects --lines invoice lines from a local Vultr-shaped server
(`collect vultr --inline`, the app's own path), then runs the dashboard's cost queries five
times. Prints per variant: resident memory once open, after the ingest and after the queries
(and how much of it is chDB's code, file-backed), peak RSS, rows per second and the queries'
time. Medians of --rounds, the variants interleaved. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, figure, free_port, machine, save_results, tempdir  # noqa: E402

TOKEN = "bench-chdb-settings"
SMALL_CACHES = {"mark_cache_size": "16777216", "index_mark_cache_size": "16777216",
                "primary_index_cache_size": "16777216",
                "vector_similarity_index_cache_size": "1048576",
                "query_condition_cache_size": "1048576", "mmap_cache_size": "64"}
FEW_THREADS = {"max_thread_pool_size": "64", "background_pool_size": "1",
               "background_schedule_pool_size": "1", "background_common_pool_size": "1"}
VARIANTS = {
    "chDB defaults": {},
    "small caches": SMALL_CACHES,
    "fewer threads": FEW_THREADS,
    "small caches + fewer threads": {**SMALL_CACHES, **FEW_THREADS},
    "max_server_memory_usage 256 MB": {"max_server_memory_usage": str(256 << 20)},
    # Its thread reads jemalloc's figures every 100 ms by default: ~0.15 % of a core at rest.
    "memory worker every 1 s": {"memory_worker_period_ms": "1000"},
}
# Runs in the child: the variant's options, the collection, the queries, the figures.
CHILD = """
import json, os, sys, time
opts, args, out = json.loads(sys.argv[1]), sys.argv[2:], os.environ["BENCH_OUT"]
from optiinfra_tui.storage import clickhouse
clickhouse.CHDB_OPTIONS = opts
def mem():
    d = {}
    for line in open("/proc/self/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            d[k] = int(v.split()[0]) / 1024
    return d
from optiinfra_tui.cli import main
from optiinfra_tui.worker.runtime import get_runtime
res = {}
code = None
try:
    main(args)
except SystemExit as exc:
    code = exc.code
res["collect_exit"] = code
res["after_ingest"] = mem()
rt = get_runtime()
store = rt.metrics()
res["after_open"] = res["after_ingest"]
t0 = time.perf_counter()
for _ in range(5):
    list(store.spend_by_day_and_provider(days=30))
    list(store.summary())
    list(store.costs(by="provider"))
    list(store.costs(by="service"))
res["queries_ms"] = (time.perf_counter() - t0) * 1000 / 5
res["after_queries"] = mem()
open(out, "w").write(json.dumps(res))
"""


def one(variant: dict, gen_port: int, home: Path) -> dict:
    out = home / "out.json"
    env = {k: v for k, v in os.environ.items() if k not in ("CLICKHOUSE_URL", "DATABASE_URL",
                                                            "REDIS_URL")}
    env.update(OPTIINFRA_HOME=str(home), VULTR_API_KEY=TOKEN, VULTR_MAX_RPS="1000",
               VULTR_API_URL=f"http://127.0.0.1:{gen_port}/v2", BENCH_OUT=str(out))
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(variant), "collect", "vultr",
                           "--inline", "--json"], env=env, capture_output=True, text=True)
    if not out.exists():
        raise RuntimeError(f"variant {variant}: {proc.stderr[-800:]}")
    res = json.loads(out.read_text())
    run = json.loads(proc.stdout)
    res["rows_s"] = run["rows"] / (run["duration_ms"] / 1000)
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lines", type=int, default=100_000)
    args = ap.parse_args(argv)
    print(f"chDB settings: {args.lines:,} lines, {args.rounds} rounds; {machine()}", flush=True)
    port = free_port()
    gen = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_vultr_gen.py"), "--port",
                            str(port), "--invoices", str(args.lines // 500), "--items", "500",
                            "--token", TOKEN], stdout=subprocess.PIPE, text=True)
    gen.stdout.readline()
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    try:
        for _ in range(args.rounds):
            for name, variant in VARIANTS.items():
                home = tempdir("bench-chdb-settings-")
                try:
                    results[name].append(one(variant, port, home))
                finally:
                    shutil.rmtree(home, ignore_errors=True)
    finally:
        gen.terminate()
    for name, rounds in results.items():
        figure(name, f"RSS after ingest {med(rounds, 'after_ingest', 'VmRSS'):.0f} MB (code "
               f"{med(rounds, 'after_ingest', 'RssFile'):.0f}), after queries "
               f"{med(rounds, 'after_queries', 'VmRSS'):.0f} MB (code "
               f"{med(rounds, 'after_queries', 'RssFile'):.0f}), peak "
               f"{med(rounds, 'after_queries', 'VmHWM'):.0f} MB; "
               f"{med(rounds, 'rows_s'):,.0f} rows/s; queries {med(rounds, 'queries_ms'):.0f} ms")
    save_results("chdb_settings", results)
    return results


def med(rounds: list[dict], key: str, sub: str | None = None) -> float:
    return statistics.median(r[key][sub] if sub else r[key] for r in rounds)


def readme_rows(results: dict) -> list[tuple]:
    """Rows for bench/run.py's README table: (figure, ours, peers, target, met)."""
    return [(f"chDB settings, {name}: RSS after ingest and queries (chDB code, file-backed)",
             f"{med(rounds, 'after_queries', 'VmRSS'):.0f} MB "
             f"({med(rounds, 'after_ingest', 'RssFile'):.0f} MB)",
             f"{med(rounds, 'rows_s'):,.0f} rows/s, queries {med(rounds, 'queries_ms'):.0f} ms",
             "<= 300 MB", med(rounds, "after_queries", "VmRSS") <= 300)
            for name, rounds in results.items()]


if __name__ == "__main__":
    main()
