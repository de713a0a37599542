"""Run every benchmark, one at a time, and print their figures, ratios and a README table.

    python bench/run.py [--quick] [--only queue_latency,ingest,...]

Each benchmark runs in a process of its own (chDB allows one engine per process, and each
one sets up its own services), prints its own figures as it goes, and leaves them as JSON
for the summary at the end. --quick runs fewer rounds and smaller sizes: a smoke run, not
figures to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine  # noqa: E402

BENCHES = {
    "queue_latency": ([], ["--rounds", "1", "--pings", "300", "--burst", "2000"]),
    "embedded_latency": ([], ["--rounds", "1", "--samples", "5"]),
    "ingest": ([], ["--rounds", "1", "--sizes", "100000,300000"]),
    "memory": ([], ["--rounds", "1"]),
    # The dashboard's own figures (first frame, paging, idle CPU): bench_dashboard.py.
    "bench_dashboard": ([], ["--runs", "20000", "--idle", "5"]),
}
# Too slow for the default run (10 million runs seeded; every chDB variant): `--only` them.
SLOW = {
    "scale_history": ([], ["--runs", "1000000", "--rounds", "3", "--sqlite-runs", "200000"]),
    "chdb_settings": ([], ["--rounds", "1", "--lines", "50000"]),
}


def med(values) -> float:
    return statistics.median(values)


def dashboard_rows(text: str) -> list[tuple]:
    """Rows from bench_dashboard.py's printed lines (it keeps no JSON of its own)."""
    rows = []
    found = re.search(r"first frame, empty history:\s+([\d.]+) ms", text)
    if found:
        ms = float(found[1])
        rows.append(("Dashboard first frame, empty history", f"{ms:.0f} ms", "", "<= 1 s",
                     ms <= 1000))
    found = re.search(r"first frame, ([\d,]+) runs:\s+([\d.]+) ms", text)
    if found:
        ms = float(found[2])
        rows.append((f"Dashboard first frame, {found[1]} runs", f"{ms:.0f} ms", "", "<= 2 s",
                     ms <= 2000))
    found = re.search(r"next window of 100 runs \(keyset\):\s+median\s+([\d.]+) ms", text)
    if found:
        rows.append(("Dashboard: move a page (100 runs) through the history",
                     f"{float(found[1]):.0f} ms median", "", "report", None))
    found = re.search(r"idle CPU, optiinfra-tui --workers 2[^:]*: ([\d.]+) %", text)
    if found:
        pct = float(found[1])
        rows.append(("Dashboard idle CPU, 2 workers", f"{pct:.1f} % of a core", "",
                     "<= 2 %", pct <= 2))
    return rows


def table(results: dict, outputs: dict) -> str:
    """The README table: figure, ours, peers, target, met."""
    rows = []
    q = results.get("queue_latency")
    if q:
        ours, plain, celery = (q.get(k) for k in ("ours", "plain", "celery"))
        if ours:
            def peers(key: str, unit: str) -> str:
                return ", ".join(f"{name} {med(r[key]):.2f} {unit}"
                                 for name, r in (("Huey", plain), ("Celery", celery)) if r)

            p50, p99 = med(ours["p50_ms"]), med(ours["p99_ms"])
            rows.append(("Redis queue, enqueue to task start, p50 (pick-up)",
                         f"{p50:.2f} ms ({med(ours['pick_p50_ms']):.2f} ms)",
                         peers("p50_ms", "ms"), "<= 1 ms", p50 <= 1))
            rows.append(("Redis queue, enqueue to task start, p99 (pick-up)",
                         f"{p99:.2f} ms ({med(ours['pick_p99_ms']):.2f} ms)",
                         peers("p99_ms", "ms"), "<= 5 ms", p99 <= 5))
            tps = med(ours["tps"])
            if celery:
                ratio = tps / med(celery["tps"])
                rows.append(("Redis queue, burst throughput vs Celery", f"{tps:,.0f} tasks/s",
                             f"Celery {med(celery['tps']):,.0f} tasks/s ({ratio:.2f}x)",
                             ">= 2x", ratio >= 2))
            if plain:
                ratio = tps / med(plain["tps"])
                rows.append(("Redis queue, burst throughput vs plain Huey", f"{tps:,.0f} tasks/s",
                             f"Huey {med(plain['tps']):,.0f} tasks/s ({ratio:.0%})",
                             ">= 80%", ratio >= 0.8))
    e = results.get("embedded_latency")
    if e:
        rows.append(("Embedded (SQLite queue), keypress to task start, p50 / p99",
                     f"{med(e['p50_ms']):.1f} / {med(e['p99_ms']):.1f} ms", "",
                     "p99 <= 100 ms", max(e["p99_ms"]) <= 100))
    i = results.get("ingest")
    if i:
        sizes = sorted(i["runs"], key=int)
        big = i["runs"][sizes[-1]]
        rate = med([x["rows_s"] for x in big])
        rows.append((f"Ingest {int(sizes[-1]):,} invoice lines into chDB", f"{rate:,.0f} rows/s",
                     "", ">= 100,000 rows/s", rate >= 100_000))
        peaks = [med([x["peak_rss_mb"] for x in i["runs"][n]]) for n in sizes]
        rows.append(("Ingest peak RSS at " + " / ".join(f"{int(n) // 1000}k" for n in sizes)
                     + " lines", " / ".join(f"{p:.0f}" for p in peaks) + " MB", "",
                     "flat", peaks[-1] - peaks[0] < 0.1 * peaks[0]))
    m = results.get("memory")
    if m:
        for mode, rounds in m.items():
            after = med([x["after_mb"] for x in rounds])
            target = mode == "distributed"
            rows.append((f"Dashboard RSS, 2 workers, {mode}"
                         + (" (no ClickHouse in process)" if target else " (chDB in process)"),
                         f"{after:.0f} MB", "old stack ~230 MB" if target else "",
                         "<= 120 MB" if target else "report", after <= 120 if target else None))
        cmds = [c for rounds in m.values() for x in rounds for c, v in x["cli"].items()
                if "chdb" in v["modules"]]
        peak = max(v["peak_mb"] for rounds in m.values() for x in rounds
                   for v in x["cli"].values())
        rows.append(("`collect --wait`, `status`, `history`: chDB loaded?",
                     "no" if not cmds else "yes: " + ", ".join(sorted(set(cmds))),
                     f"peak RSS <= {peak:.0f} MB", "never", not cmds))
    rows += dashboard_rows(outputs.get("bench_dashboard", ""))
    for name in SLOW:  # their own rows, from their own modules
        if name in results:
            rows += __import__(name).readme_rows(results[name])
    out = ["| figure | ours | peers | target | met |", "|---|---|---|---|---|"]
    for name, ours, peers, target, met in rows:
        verdict = "" if met is None else ("yes" if met else "**no**")
        out.append(f"| {name} | {ours} | {peers} | {target} | {verdict} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes")
    parser.add_argument("--only", help="comma-separated bench names: "
                        + ", ".join([*BENCHES, *SLOW]))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    out_dir = Path(tempfile.mkdtemp(prefix="bench-results-"))
    env = dict(os.environ, BENCH_RESULTS_DIR=str(out_dir))
    print(f"machine: {machine()}", flush=True)
    failed, outputs = [], {}
    for name in names:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"\n== {name}: not present, skipped", flush=True)
            continue
        full, quick = {**BENCHES, **SLOW}[name]
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, str(script), *(quick if args.quick else full)],
                                env=env, cwd=HERE.parent, stdout=subprocess.PIPE, text=True)
        lines = []
        for line in proc.stdout:  # shown as it comes, kept for the summary
            print(line, end="", flush=True)
            lines.append(line)
        code = proc.wait()
        outputs[name] = "".join(lines)
        print(f"== {name}: {'done' if code == 0 else f'exit {code}'} in "
              f"{time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    results = {p.stem: json.loads(p.read_text()) for p in out_dir.glob("*.json")}
    print(f"\n== summary (medians over rounds; {machine()})\n", flush=True)
    print(table(results, outputs), flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", flush=True)


if __name__ == "__main__":
    main()
