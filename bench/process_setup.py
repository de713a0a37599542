"""What each start-up setting of optiinfra_tui/worker/startup.py buys, measured against going without.

    python bench/process_setup.py [--rounds 5] [--lines 300000]

1. The young-generation GC threshold: `collect vultr --inline` of --lines invoice lines from
   the local generator server (as bench/ingest.py), once as shipped and once with Python's
   default threshold (700), interleaved. Prints the time spent in GC passes (gc.callbacks),
   their number, the process's CPU seconds and rows per CPU second.
2. Keeping pyarrow from chDB: a fresh process opens a chDB store and writes 1,000 lines,
   once as shipped and once with pyarrow allowed. Prints peak RSS, seconds to open the store
   and which of pyarrow/numpy got loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, figure, machine, save_results, tempdir  # noqa: E402
from ingest import TOKEN, Server  # noqa: E402

# Both children report through REPORT_TO; VARIANT says which setting to leave out.
GC_CHILD = """
import atexit, gc, json, os, sys, time
spent = {"gc_s": 0.0, "passes": 0}
started = [0.0]
def watch(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        spent["gc_s"] += time.perf_counter() - started[0]
        spent["passes"] += 1
gc.callbacks.append(watch)
def report():
    spent["cpu_s"] = time.process_time()
    with open(os.environ["REPORT_TO"], "w") as f:
        json.dump(spent, f)
atexit.register(report)
from optiinfra_tui.worker import startup
if os.environ["VARIANT"] == "without":
    startup.YOUNG_GC_THRESHOLD = 700  # Python's default
sys.argv = ["optiinfra-tui", "collect", "vultr", "--inline", "--json"]
from optiinfra_tui.cli import main
main()
"""

CHDB_CHILD = """
import json, os, resource, sys, time
from datetime import datetime
from decimal import Decimal
from optiinfra_tui.worker import startup
from optiinfra_tui.storage import clickhouse, metrics
if os.environ["VARIANT"] == "without":
    clickhouse.keep_pyarrow_from_chdb = lambda: None
startup.prepare_process()
from optiinfra_tui.rows import COST_LINES, Batch, CostRow
began = time.perf_counter()
store = metrics.open_metrics("chdb://" + os.environ["CHDB_PATH"])
opened = time.perf_counter() - began
at = datetime(2025, 3, 5)
rows = [CostRow(f"l{i}", "c", "p", "a", "1", Decimal(i), Decimal(i), Decimal(i), Decimal(1),
                "USD", at, at, at.date(), "Usage", "d", "s", "", "", "", Decimal(1), "h", False,
                1, at) for i in range(1000)]
store.write(Batch(COST_LINES, rows))
assert store.count_rows(COST_LINES) == 1000
with open(os.environ["REPORT_TO"], "w") as f:
    json.dump({"open_s": opened,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               "loaded": [m for m in ("pyarrow", "numpy") if m in sys.modules]}, f)
"""


GC_LABELS = {"shipped": "10,000 (shipped)", "without": "700 (Python's default)"}
CHDB_LABELS = {"shipped": "pyarrow kept from chDB (shipped)", "without": "pyarrow allowed"}


def child_env(home: Path, variant: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "REDIS_HOST", "DATABASE_URL", "CLICKHOUSE_URL")}
    env.update(OPTIINFRA_HOME=str(home), REPORT_TO=str(home / "report.json"), VARIANT=variant,
               COLLECTION_INTERVAL="86400", **extra)
    return env


def gc_round(variant: str, lines: int) -> dict:
    server = Server("gen", lines)
    home = tempdir("bench-setup-")
    try:
        env = child_env(home, variant, VULTR_API_URL=server.url, VULTR_API_KEY=TOKEN,
                        VULTR_MAX_RPS="100000")
        done = subprocess.run([sys.executable, "-c", GC_CHILD], env=env, capture_output=True,
                              text=True, cwd=ROOT)
        run = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if run.get("status") != "success":
            raise RuntimeError(f"collection failed: {run.get('error_message') or done.stderr[-500:]}")
        report = json.loads((home / "report.json").read_text())
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    report["rows"] = run["rows"]
    report["rows_per_cpu_s"] = run["rows"] / report["cpu_s"]
    return report


def chdb_round(variant: str) -> dict:
    home = tempdir("bench-setup-")
    try:
        env = child_env(home, variant, CHDB_PATH=str(home / "clickhouse"))
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(CHDB_CHILD)], env=env,
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode:
            raise RuntimeError(done.stderr[-1000:])
        return json.loads((home / "report.json").read_text())
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=300_000)
    args = parser.parse_args(argv)
    print(f"start-up settings, {args.rounds} rounds each, interleaved; {machine()}", flush=True)
    variants = ("shipped", "without")
    gc_runs: dict[str, list[dict]] = {v: [] for v in variants}
    chdb_runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for variant in variants:
            res = gc_round(variant, args.lines)
            gc_runs[variant].append(res)
            print(f"  round {r + 1} GC threshold {variant:8} {res['gc_s'] * 1000:6.0f} ms in "
                  f"{res['passes']} passes, CPU {res['cpu_s']:.2f} s, "
                  f"{res['rows_per_cpu_s']:,.0f} rows per CPU second", flush=True)
        for variant in variants:
            res = chdb_round(variant)
            chdb_runs[variant].append(res)
            print(f"  round {r + 1} pyarrow guard {variant:8} peak RSS "
                  f"{res['peak_rss_mb']:.0f} MB, open {res['open_s']:.2f} s, loaded "
                  f"{res['loaded'] or 'none'}", flush=True)
    print(f"results: medians over {args.rounds} rounds", flush=True)
    for variant in variants:
        gc_med = {key: statistics.median([x[key] for x in gc_runs[variant]])
                  for key in ("gc_s", "passes", "cpu_s", "rows_per_cpu_s")}
        figure(f"{args.lines:,} lines, GC threshold {GC_LABELS[variant]}",
               f"{gc_med['gc_s'] * 1000:.0f} ms in GC, {gc_med['passes']:.0f} passes, "
               f"{gc_med['cpu_s']:.2f} s CPU, {gc_med['rows_per_cpu_s']:,.0f} rows per CPU second")
        runs = chdb_runs[variant]
        figure(f"open chDB + write 1,000 lines, {CHDB_LABELS[variant]}",
               f"peak RSS {statistics.median([x['peak_rss_mb'] for x in runs]):.0f} MB, open "
               f"{statistics.median([x['open_s'] for x in runs]):.2f} s, loaded "
               f"{sorted({m for x in runs for m in x['loaded']}) or 'none'}")
    results = {"gc": gc_runs, "chdb": chdb_runs}
    save_results("process_setup", results)
    return results


if __name__ == "__main__":
    main()
