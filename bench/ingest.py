"""Ingestion: invoice lines from a local Vultr-shaped server into chDB, end to end.

    python bench/ingest.py [--rounds 3] [--sizes 100000,300000,1000000] [--server gen|fake]

Each collection is `optiinfra-tui collect vultr --inline --json` in a process of its own
(fresh data dir, chDB in-process, VULTR_MAX_RPS raised: 30 rps is Vultr's limit, not ours),
against a server holding the lines as invoices of 500 items. Prints rows per second (the
run's own duration, and wall clock including start-up), rows per CPU second of the process
(steadier than either on a shared machine) and the process's peak RSS per size.
First it measures what each server can serve alone (the fake or the dedicated generator),
to show which one the figure is limited by.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, cpu_seconds, figure, fmt, free_port, machine, save_results, tempdir  # noqa: E402

ITEMS = 500  # lines per invoice: one full page each
TOKEN = "bench-ingest-token"
TARGET_ROWS_S = 100_000
SERVERS = {"gen": [str(ROOT / "bench" / "_vultr_gen.py")],
           "fake": [str(ROOT / "tests" / "fake_vultr.py"), "--pending", "10"]}


class Server:
    def __init__(self, kind: str, lines: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, *SERVERS[kind], "--port", str(self.port), "--invoices",
             str(lines // ITEMS), "--items", str(ITEMS), "--token", TOKEN],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.proc.stdout:  # both print a line once they serve
            if "lines" in line:
                break
        self.url = f"http://127.0.0.1:{self.port}/v2"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def serve_rate(kind: str, lines: int) -> float:
    """Rows per second the server alone delivers to a client that only reads the JSON."""
    import httpx

    server = Server(kind, lines)
    try:
        client = httpx.Client(base_url=server.url + "/", timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        start, rows = time.monotonic(), 0
        for invoices in _pages(client, "billing/invoices", "billing_invoices"):
            for inv in invoices:
                for items in _pages(client, f"billing/invoices/{inv['id']}/items",
                                    "invoice_items"):
                    rows += len(items)
        return rows / (time.monotonic() - start)
    finally:
        server.stop()


def _pages(client, path: str, key: str):
    query = {"per_page": 500}
    while True:
        body = client.get(path, params=query).json()
        yield body[key]
        if not body["meta"]["links"]["next"]:
            return
        query["cursor"] = body["meta"]["links"]["next"]


def collect(kind: str, lines: int) -> dict:
    """One end-to-end collection in a fresh process; its rows, durations and peak RSS."""
    server = Server(kind, lines)
    home = tempdir("bench-ingest-")
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "REDIS_HOST", "DATABASE_URL", "CLICKHOUSE_URL")}
    env.update(OPTIINFRA_HOME=str(home), VULTR_API_URL=server.url, VULTR_API_KEY=TOKEN,
               VULTR_MAX_RPS="100000", COLLECTION_INTERVAL="86400")
    try:
        server_cpu = cpu_seconds(server.proc.pid)
        start = time.monotonic()
        with open(home / "out", "w") as out_f, open(home / "err", "w") as err_f:
            proc = subprocess.Popen([sys.executable, "-m", "optiinfra_tui.cli", "collect",
                                     "vultr", "--inline", "--json"], env=env, stdout=out_f,
                                    stderr=err_f)
            # wait4, not wait: it also returns the child's own peak RSS.
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = 0  # reaped above; keeps Popen from waiting again
        wall = time.monotonic() - start
        server_cpu = cpu_seconds(server.proc.pid) - server_cpu
        out, err = (home / "out").read_text(), (home / "err").read_text()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    run = json.loads(out) if out.strip().startswith("{") else {}
    if run.get("status") != "success":
        raise RuntimeError(f"collection failed: {run.get('error_message') or err[-500:]}")
    cpu = usage.ru_utime + usage.ru_stime  # start-up included; every chDB thread counted
    return {"rows": run["rows"], "rows_s": run["rows"] / (run["duration_ms"] / 1000),
            "wall_rows_s": run["rows"] / wall, "cpu_rows_s": run["rows"] / cpu,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "server_cpu_s": server_cpu, "seconds": run["duration_ms"] / 1000}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="100000,300000,1000000")
    parser.add_argument("--server", choices=tuple(SERVERS), default="gen")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"ingestion into chDB: {args.rounds} rounds of {', '.join(map(str, sizes))} lines "
          f"({ITEMS} per invoice) from the {args.server} server; {machine()}", flush=True)
    probe = min(sizes)
    rates = {kind: serve_rate(kind, probe) for kind in SERVERS}
    for kind, rate in rates.items():
        figure(f"server alone: {kind} ({probe} lines, client reads JSON)", f"{rate:,.0f} rows/s")
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    for r in range(args.rounds):
        for n in sizes:
            res = collect(args.server, n)
            results[n].append(res)
            print(f"  round {r + 1} {n:>9,} lines: {res['rows_s']:,.0f} rows/s "
                  f"({res['seconds']:.1f} s; wall incl. start-up {res['wall_rows_s']:,.0f} "
                  f"rows/s; per CPU second {res['cpu_rows_s']:,.0f}), peak RSS "
                  f"{res['peak_rss_mb']:.0f} MB, server CPU "
                  f"{res['server_cpu_s']:.1f} s", flush=True)
    print("results: median [min-max] over rounds", flush=True)
    for n in sizes:
        runs = results[n]
        rate = [x["rows_s"] for x in runs]
        figure(f"{n:>9,} lines: rows/s (run duration)", fmt(rate, "rows/s", 0),
               ">= 100,000 rows/s" if n == max(sizes) else "",
               sorted(rate)[len(rate) // 2] >= TARGET_ROWS_S if n == max(sizes) else None)
        figure(f"{n:>9,} lines: rows/s (wall, incl. start-up)",
               fmt([x["wall_rows_s"] for x in runs], "rows/s", 0))
        figure(f"{n:>9,} lines: rows per CPU second (process)",
               fmt([x["cpu_rows_s"] for x in runs], "rows/s", 0))
        figure(f"{n:>9,} lines: peak RSS", fmt([x["peak_rss_mb"] for x in runs], "MB", 0))
    peaks = {n: sorted(x["peak_rss_mb"] for x in results[n])[len(results[n]) // 2] for n in sizes}
    growth = peaks[max(sizes)] - peaks[min(sizes)]
    figure(f"peak RSS growth {min(sizes):,} -> {max(sizes):,} lines", f"{growth:+.0f} MB",
           "flat (not growing with rows)", growth < 0.1 * peaks[min(sizes)])
    save_results("ingest", {"servers": rates, "runs": results})
    return {"servers": rates, "runs": results}


if __name__ == "__main__":
    main()
