"""Run every benchmark, one at a time, print their figures, ratios and a README table, and
write that table's rows into README.md.

    python bench/run.py [--quick] [--only queue_latency,ingest,...] [--no-readme]

Each benchmark runs in a process of its own (chDB allows one engine per process, and each
one sets up its own services), prints its own figures as it goes, and leaves them as JSON
for the summary at the end. Each row it measured replaces the README row of the same
figure (the others stay: figures of benches this run left out). --quick runs fewer rounds
and smaller sizes: a smoke run, not figures to quote, never written to the README.
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

import queue_latency  # noqa: E402
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
    # One 10,000-customer slot at the best settings measured (the default's takes ~35 min),
    # watched by a dashboard in tmux and profiled ({results}: this run's results dir).
    "scale_customers": (["--workers", "64", "--dashboard", "--profile", "{results}/slot.spy"],
                        ["--customers", "1000", "--workers", "32"]),
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
    if "queue_latency" in results:
        rows += queue_latency.readme_rows(results["queue_latency"])
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
    out = [TABLE_HEAD, "|---|---|---|---|---|"]
    for name, ours, peers, target, met in rows:
        verdict = "" if met is None else ("yes" if met else "**no**")
        out.append(f"| {name} | {ours} | {peers} | {target} | {verdict} |")
    return "\n".join(out)


README = HERE.parent / "README.md"
TABLE_HEAD = "| figure | ours | peers | target | met |"


def write_readme(table_text: str, readme: Path = README) -> int:
    """Put the table's rows into the README's performance table, each in place of the row of
    the same figure (or at its end); returns how many rows were written."""
    lines = readme.read_text().split("\n")
    start = lines.index(TABLE_HEAD) + 2
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    rows = lines[start:end]
    at = {row.split(" | ", 1)[0]: i for i, row in enumerate(rows)}
    new = table_text.split("\n")[2:]
    for row in new:
        key = row.split(" | ", 1)[0]
        if key in at:
            rows[at[key]] = row
        else:
            at[key] = len(rows)
            rows.append(row)
    readme.write_text("\n".join(lines[:start] + rows + lines[end:]))
    return len(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes")
    parser.add_argument("--only", help="comma-separated bench names: "
                        + ", ".join([*BENCHES, *SLOW]))
    parser.add_argument("--no-readme", action="store_true", help="print the table only")
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
        argv = [a.replace("{results}", str(out_dir)) for a in (quick if args.quick else full)]
        proc = subprocess.Popen([sys.executable, str(script), *argv],
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
    summary = table(results, outputs)
    print(summary, flush=True)
    if not (args.quick or args.no_readme):
        print(f"\nREADME.md: {write_readme(summary)} rows of its performance table written",
              flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", flush=True)


if __name__ == "__main__":
    main()
