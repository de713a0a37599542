"""10,000 customers in one scheduled slot: how long it takes one headless consumer, with what
CPU and memory, against a Vultr-shaped server that answers every request after 100 ms.

    python bench/scale_customers.py [--customers 10000] [--workers 2] [--greenlets N]
                                    [--delay 0.1] [--dashboard]

Starts its own Redis, PostgreSQL and server (bench/_vultr_slow.py: customer i's own key, a few
invoices and pending charges, 4-5 requests a collection), writes a config of --customers
customers each naming its own key variable and one Vultr `cost` schedule, and runs one
consumer: `optiinfra-tui --headless --workers N` (threads; chDB in process, the default) or,
with --greenlets N, `huey_consumer huey_config.huey -k greenlet -w N` (gevent). It enqueues
the schedule's slot as the agent does when it claims one (scheduled_collection_task: the
fan-out records a run per customer and queues it), then samples the consumer's CPU and RSS
until every run is final. Afterwards it checks that every run succeeded and that each
customer's total read back (`optiinfra-tui costs --by customer --json`) is exactly what the
server served. With --dashboard, `optiinfra-tui --workers 0` watches the slot in tmux
(160x45): screen refresh intervals, key to screen, and the workers panel at 160x45 and 80x24
(saved in a bench-scale-screens- dir that is kept). With --profile FILE, py-spy samples the
consumer during the slot twice: the thread holding the GIL (raw stacks in FILE) and every
worker thread, running or waiting (FILE.wall); the bench prints where each one's time went.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _vultr_slow as api  # noqa: E402
from _common import (  # noqa: E402
    Postgres,
    Redis,
    cpu_seconds,
    figure,
    file_rss_mb,
    free_port,
    machine,
    peak_rss_mb,
    percentile,
    rss_mb,
    save_results,
    tempdir,
    tree_cpu_seconds,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "optiinfra_tui"]
GEVENT_CONSUMER = ("from gevent import monkey; monkey.patch_all(); import sys; "
                   "from huey.bin.huey_consumer import consumer_main; "
                   "sys.argv[0] = 'huey_consumer'; sys.exit(consumer_main())")
TARGET_S = 300.0
TARGET_RSS_MB = 300.0
SCHEDULE = "scale"


def write_config(home: Path, customers: int) -> tuple[Path, dict[str, str]]:
    """The TOML (one table per customer, its own key variable) and the keys' environment."""
    lines = ['[[schedules]]\nname = "scale"\nprovider = "vultr"\ndata_types = ["cost"]\n'
             'cron = "0 0 1 1 *"\n']  # yearly: the bench enqueues its one slot itself
    keys = {}
    for i in range(customers):
        lines.append(f'[customers.c{i:05d}.vultr]\napi_key_env = "VULTR_KEY_{i:05d}"\n')
        keys[f"VULTR_KEY_{i:05d}"] = f"key-{i}"
    path = home / "customers.toml"
    path.write_text("\n".join(lines))
    return path, keys


class Sampler:
    """The consumer's CPU and RSS over the slot, sampled every `every` seconds."""

    def __init__(self, pid: int, others: dict[str, int]) -> None:
        self.pid, self.others = pid, others
        self.samples: list[tuple[float, float, float]] = []  # (t, cpu s, rss MB)
        self.start_cpu = cpu_seconds(pid)
        self.start_others = {k: tree_cpu_seconds(p) for k, p in others.items()}

    def sample(self, t: float) -> None:
        self.samples.append((t, cpu_seconds(self.pid) - self.start_cpu, rss_mb(self.pid)))

    def others_cpu(self) -> dict[str, float]:
        return {k: tree_cpu_seconds(p) - self.start_others[k] for k, p in self.others.items()}


def final_counts(cur) -> tuple[int, int, int]:
    cur.execute("SELECT count(*), count(*) FILTER (WHERE status IN ('success', 'failed', "
                "'canceled')), count(*) FILTER (WHERE status = 'success') FROM collection_runs "
                "WHERE schedule = %s", (SCHEDULE,))
    return cur.fetchone()


def run_slot(args, env: dict, home: Path, pg: Postgres, redis_srv: Redis,
             server: subprocess.Popen) -> dict:
    import psycopg2

    cwd = ROOT
    if args.no_store:
        cmd = [sys.executable, "-c", "import _queue_workers as w; w.main()", "slot"]
        env = dict(env, BENCH_WORKERS=str(args.workers or 2))
        label = f"--headless --workers {args.workers or 2}, null store"
        cwd = Path(__file__).parent
    elif args.greenlets:
        # huey_consumer leaves gevent's monkey-patching to the program: done first, here.
        cmd = [sys.executable, "-c", GEVENT_CONSUMER, "huey_config.huey", "-k", "greenlet",
               "-w", str(args.greenlets)]
        label = f"huey_consumer -k greenlet -w {args.greenlets} (gevent, patched)"
    else:
        cmd = [*CLI, "--headless", *(["--workers", str(args.workers)] if args.workers else [])]
        label = f"--headless --workers {args.workers or 'default (2)'}"
    out = open(home / "consumer.log", "w")
    consumer = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    conn = psycopg2.connect(env["DATABASE_URL"])
    conn.autocommit = True
    cur = conn.cursor()
    dashboard = None
    try:
        def beating() -> bool:
            try:
                cur.execute("SELECT count(*) FROM worker_heartbeats WHERE pid = %s",
                            (consumer.pid,))
            except psycopg2.Error:  # not migrated yet
                return False
            return cur.fetchone()[0] > 0

        if not wait_until(beating, 120, 0.2):
            raise RuntimeError(f"consumer did not start: {(home / 'consumer.log').read_text()[-2000:]}")
        idle_rss = rss_mb(consumer.pid)
        if args.dashboard:
            dashboard = Dashboard(env)
        from optiinfra_tui.settings import load_settings
        from optiinfra_tui.worker.runtime import Runtime

        rt = Runtime(load_settings(dict(env, OPTIINFRA_HOME=str(home / "producer"))))
        sampler = Sampler(consumer.pid, {"postgres": pg.pid, "redis": redis_srv.proc.pid,
                                         "vultr server": server.pid})
        profiler = Profiler(consumer.pid, args.profile) if args.profile else None
        started = time.monotonic()
        # What the agent does once it has claimed a slot.
        rt.tasks.scheduled_collection_task("vultr", ["cost"], schedule=SCHEDULE)
        fanned = None
        last = (0, 0, 0)
        while True:
            now = time.monotonic() - started
            sampler.sample(now)
            last = final_counts(cur)
            if fanned is None and last[0] >= args.customers:
                fanned = now
            if last[0] >= args.customers and last[1] >= last[0]:
                break
            if now > args.timeout:
                print(f"  timed out after {now:.0f} s: {last}", flush=True)
                break
            if dashboard:
                if not dashboard.mid and last[1] >= args.customers // 2:
                    dashboard.save("mid")  # the workers panel while every thread is busy
                dashboard.watch(0.5)
            else:
                time.sleep(0.5)
        took = time.monotonic() - started
        sampler.sample(took)
        others = sampler.others_cpu()
        peak = peak_rss_mb(consumer.pid)
        code = file_rss_mb(consumer.pid)  # mapped files: chDB's library, most of it
        profile = profiler.finish(took) if profiler else None
        dash = dashboard.finish() if dashboard else None
    finally:
        if dashboard:
            dashboard.stop()
        consumer.send_signal(signal.SIGTERM)
        try:
            consumer.wait(120)
        except subprocess.TimeoutExpired:
            consumer.kill()
        out.close()
        conn.close()
    cur_runs, final, success = last
    cpu = sampler.samples[-1][1]
    return {"label": label, "took_s": took, "fan_out_s": fanned, "runs": cur_runs,
            "final": final, "success": success, "cpu_s": cpu, "cpu_pct": 100 * cpu / took,
            "idle_rss_mb": idle_rss, "peak_rss_mb": peak, "file_rss_mb": code,
            "profile": profile,
            "rss_mb": [round(s[2]) for s in sampler.samples[::10]],
            "others_cpu_s": others, "dashboard": dash}


def check_totals(env: dict, customers: int) -> tuple[int, list[str]]:
    """Customers whose total read back is exactly what the server served; the first misses."""
    r = subprocess.run([*CLI, "costs", "--by", "customer", "--json"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        return 0, [f"costs exited {r.returncode}: {r.stderr[-500:]}"]
    got: dict[str, Decimal] = {}
    for row in json.loads(r.stdout):  # one per customer and currency (all USD here)
        got[row["key"]] = got.get(row["key"], Decimal(0)) + Decimal(row["total"])
    exact, misses = 0, []
    for i in range(customers):
        cid, want = f"c{i:05d}", api.expected_total(i)
        if got.get(cid) == want:
            exact += 1
        elif len(misses) < 5:
            misses.append(f"{cid}: {got.get(cid)} != {want}")
    return exact, misses


class Profiler:
    """py-spy on the consumer, twice: the thread holding the GIL (which code costs CPU) and
    every worker thread, running or waiting (where a collection's time goes)."""

    RATE = 50

    def __init__(self, pid: int, path: str) -> None:
        self.paths = (Path(path), Path(f"{path}.wall"))
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.procs = [subprocess.Popen(
            [spy, "record", "-p", str(pid), "-r", str(self.RATE), mode, "--nonblocking",
             "--format", "raw", "-o", str(out)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL) for mode, out in zip(("--gil", "--idle"), self.paths,
                                                            strict=True)]

    def finish(self, seconds: float) -> dict:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes what it has, then exits
        for proc in self.procs:
            proc.wait(60)
        gil = profile_summary(self.paths[0], seconds * self.RATE)
        return {**gil, "waits": wait_summary(self.paths[1])}


# Frames that are every thread's: they say nothing about where the time goes.
_PLUMBING = ("threading.py", "huey/consumer.py", "huey/api.py", "worker/tasks.py")
# Where a worker thread's time is spent, by its innermost frame in one of these.
_WAITS = ("storage/", "collectors/http.py", "httpcore/", "huey/storage.py")


def _stacks(path: Path):
    for line in path.read_text().split("\n"):  # not splitlines: a frame may hold \x1c
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            yield stack.split(";"), int(count)


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').split('site-packages/')[-1].split('optiinfra_tui/')[-1]})"


def profile_summary(path: Path, possible: float, top: int = 14) -> dict:
    """From py-spy's raw stacks: the share of the slot the GIL was held, and the functions
    (with their callees) that held it most, each as a share of the GIL time."""
    inclusive: dict[str, int] = {}
    total = 0
    for frames, n in _stacks(path):
        total += n
        seen = set()
        for frame in frames:
            key = _short(frame).rsplit(":", 1)[0] + ")"
            if any(p in frame for p in _PLUMBING) or key in seen:
                continue
            seen.add(key)
            inclusive[key] = inclusive.get(key, 0) + n
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return {"gil_held": total / possible if possible else None, "samples": total,
            "top": [(name, n / total) for name, n in ranked] if total else []}


def wait_summary(path: Path, top: int = 8) -> list[tuple[str, float]]:
    """Where the worker threads' wall time went (running or waiting): the innermost frame of
    the store, the HTTP client or the queue, each as a share of the workers' samples."""
    where: dict[str, int] = {}
    total = 0
    for frames, n in _stacks(path):
        if not any("Worker.loop" in f for f in frames):
            continue
        total += n
        frame = next((f for f in reversed(frames) if any(w in f for w in _WAITS)), frames[-1])
        where[_short(frame)] = where.get(_short(frame), 0) + n
    ranked = sorted(where.items(), key=lambda kv: -kv[1])[:top]
    return [(name, n / total) for name, n in ranked] if total else []


class Dashboard:
    """`optiinfra-tui --workers 0` in tmux during the slot: what its screen does."""

    def __init__(self, env: dict) -> None:
        self.session = f"scale{os.getpid()}"
        # A tmux server of its own: a shared one keeps the environment of whoever started it.
        self.tmux = ["tmux", "-L", self.session, "-f", "/dev/null"]
        self.home = tempdir("bench-scale-screens-")  # kept: the run's evidence
        self.changes: list[float | None] = []
        self.keys: list[float] = []
        self.last = ""
        self.mid = False
        envs = [f"{k}={v}" for k, v in env.items() if k.startswith(("OPTIINFRA", "REDIS",
                                                                    "DATABASE", "VULTR_API"))]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", self.session, "-x", "160", "-y", "45",
                        "env", *envs, *CLI, "--workers", "0"], check=True, env=env, cwd=ROOT)
        wait_until(lambda: "Quit" in self.screen(), 60, 0.1)
        self.last = self.screen()

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.session],
                              capture_output=True, text=True).stdout

    def watch(self, seconds: float) -> None:
        """Poll the screen for `seconds`, noting when it changes; press a key once."""
        end = time.monotonic() + seconds
        if len(self.keys) < 20 and len(self.changes) % 4 == 3:
            self.key_to_screen()
        while time.monotonic() < end:
            text = self.screen()
            if text != self.last:
                self.changes.append(time.monotonic())
                self.last = text
            time.sleep(0.05)

    def key_to_screen(self) -> None:
        """`?` opens the help screen, escape closes it: seconds until each shows."""
        for key, shown in (("?", lambda s: "Keys" in s or "help" in s.lower()),
                           ("Escape", lambda s: "Quit" in s and "Keys" not in s)):
            sent = time.monotonic()
            subprocess.run([*self.tmux, "send-keys", "-t", self.session, key])
            if wait_until(lambda shown=shown: shown(self.screen()), 5, 0.005):
                self.keys.append(time.monotonic() - sent)
        self.last = self.screen()

    def save(self, when: str) -> None:
        """The screen at 80x24 and at 160x45 (where it stays), as text under the temp dir."""
        self.mid = self.mid or when == "mid"
        for cols, rows in ((80, 24), (160, 45)):
            subprocess.run([*self.tmux, "resize-window", "-t", self.session, "-x", str(cols), "-y",
                            str(rows)])
            time.sleep(1.5)
            (self.home / f"dashboard-{when}-{cols}x{rows}.txt").write_text(self.screen())
        self.last = self.screen()
        self.changes.append(None)  # not watched meanwhile: no interval spans this

    def finish(self) -> dict:
        self.save("end")
        gaps = [b - a for a, b in zip(self.changes, self.changes[1:], strict=False)
                if a is not None and b is not None]
        return {"refresh_p50_s": statistics.median(gaps) if gaps else None,
                "refresh_p95_s": percentile(gaps, 95) if gaps else None,
                "refresh_max_s": max(gaps) if gaps else None,
                "key_p50_ms": 1000 * statistics.median(self.keys) if self.keys else None,
                "key_max_ms": 1000 * max(self.keys) if self.keys else None,
                "screens": str(self.home)}

    def stop(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=0, help="worker threads (0: default)")
    parser.add_argument("--greenlets", type=int, default=0,
                        help="run huey_consumer -k greenlet -w N instead (needs gevent)")
    parser.add_argument("--delay", type=float, default=0.1, help="server delay per request (s)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--dashboard", action="store_true", help="watch the slot in tmux")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--no-store", action="store_true",
                        help="the consumer writes to a null metrics store (no chDB): its RSS "
                        "less the store's; totals are not checked")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy the consumer's GIL holder during the slot (raw stacks)")
    args = parser.parse_args(argv)

    home = tempdir("bench-scale-")
    redis_srv = Redis().start()
    pg = Postgres()
    port = free_port()
    server = subprocess.Popen([sys.executable, str(Path(__file__).parent / "_vultr_slow.py"),
                               "--port", str(port), "--delay", str(args.delay)],
                              stdout=subprocess.PIPE, text=True)
    server.stdout.readline()
    config, keys = write_config(home, args.customers)
    env = dict(os.environ, **keys, OPTIINFRA_HOME=str(home / "consumer"),
               OPTIINFRA_CONFIG=str(config), REDIS_URL=redis_srv.url(0),
               DATABASE_URL=pg.start(), VULTR_API_URL=f"http://127.0.0.1:{port}/v2",
               VULTR_MAX_RPS="1000", PROVIDER_CHECK_INTERVAL="0")
    env.pop("CLICKHOUSE_URL", None)  # chDB in the consumer: the default
    print(f"scale: {args.customers:,} customers, {args.delay * 1000:.0f} ms a request, one "
          f"consumer; {machine()}", flush=True)
    try:
        result = run_slot(args, env, home, pg, redis_srv, server)
        result["customers"] = args.customers
        result["exact"], misses = (None, []) if args.no_store else check_totals(env,
                                                                                 args.customers)
    finally:
        server.terminate()
        server.wait(10)
        redis_srv.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    report(result, misses)
    save_results("scale_customers", result)
    return result


def report(r: dict, misses: list[str]) -> None:
    n = r["customers"]
    print(f"results ({r['label']}):", flush=True)
    figure("slot: every run final", f"{r['took_s']:.0f} s ({n / r['took_s']:.1f} collections/s;"
           f" fan-out queued in {r['fan_out_s'] or float('nan'):.1f} s)",
           f"<= {TARGET_S:.0f} s", r["took_s"] <= TARGET_S and r["final"] == n)
    figure("runs in the history / succeeded", f"{r['runs']:,} / {r['success']:,}",
           f"{n:,}", r["runs"] == n and r["success"] == n)
    if r["exact"] is None:
        print("  customers' totals                              not checked: a null store",
              flush=True)
    else:
        figure("customers' totals exact", f"{r['exact']:,} of {n:,}", "all", r["exact"] == n)
    for miss in misses:
        print(f"    {miss}", flush=True)
    figure("consumer CPU", f"{r['cpu_s']:.0f} s ({r['cpu_pct']:.0f} % of a core; "
           f"{1000 * r['cpu_s'] / n:.1f} ms a collection)")
    figure("consumer RSS: idle before / peak", f"{r['idle_rss_mb']:.0f} / {r['peak_rss_mb']:.0f} MB"
           f" (mapped files at the end, chDB's library most of it: {r['file_rss_mb']:.0f} MB)",
           f"<= {TARGET_RSS_MB:.0f} MB plus the store")
    figure("other processes' CPU", ", ".join(f"{k} {v:.0f} s" for k, v in r["others_cpu_s"].items()))
    p = r.get("profile")
    if p:
        print(f"  profile: the GIL was held {100 * (p['gil_held'] or 0):.0f} % of the slot "
              f"({p['samples']:,} samples); of that time, in (with callees):", flush=True)
        for name, share in p["top"]:
            print(f"    {100 * share:5.1f} %  {name}", flush=True)
        print("  profile: the worker threads' time, running or waiting, by where it was:",
              flush=True)
        for name, share in p["waits"]:
            print(f"    {100 * share:5.1f} %  {name}", flush=True)
    d = r.get("dashboard")
    if d:
        figure("dashboard refresh interval p50 / p95 / max",
               f"{d['refresh_p50_s'] or float('nan'):.2f} / {d['refresh_p95_s'] or float('nan'):.2f}"
               f" / {d['refresh_max_s'] or float('nan'):.2f} s (screen sampled every 50 ms)",
               "<= 1 s", (d["refresh_p95_s"] or 99) <= 1.05)
        figure("dashboard key to screen p50 / max",
               f"{d['key_p50_ms'] or float('nan'):.0f} / {d['key_max_ms'] or float('nan'):.0f} ms",
               "<= 150 ms", (d["key_max_ms"] or 9999) <= 150)
        print(f"    screens: {d['screens']}/dashboard-*.txt", flush=True)


def readme_rows(r: dict) -> list[tuple]:
    """Rows for bench/run.py's README table: (figure, ours, peers, target, met)."""
    n = r["customers"]
    what = f"{n:,} customers in one slot ({r['label']})"
    exact = ("totals not checked (null store)" if r["exact"] is None
             else f"{r['exact']:,} totals exact")
    rows = [(f"{what}: every run final", f"{r['took_s']:.0f} s ({n / r['took_s']:.1f}/s), "
             f"{r['success']:,} succeeded, {exact}", "",
             f"<= {TARGET_S:.0f} s, all", r["took_s"] <= TARGET_S and r["success"] == n
             and r["exact"] in (n, None)),
            (f"{what}: consumer CPU and RSS", f"{1000 * r['cpu_s'] / n:.1f} ms CPU a collection; "
             f"RSS {r['idle_rss_mb']:.0f} MB idle, {r['peak_rss_mb']:.0f} MB peak", "",
             f"<= {TARGET_RSS_MB:.0f} MB plus the store", None)]
    d = r.get("dashboard")
    if d and d.get("refresh_max_s") is not None:
        rows.append((f"{what}: dashboard refresh / key to screen (tmux)",
                     f"{d['refresh_p50_s']:.2f} s (p95 {d['refresh_p95_s']:.2f}, max "
                     f"{d['refresh_max_s']:.2f}) / {d['key_p50_ms']:.0f} ms (max "
                     f"{d['key_max_ms']:.0f})", "", "<= 1 s / <= 150 ms",
                     d["refresh_p95_s"] <= 1.05 and d["key_max_ms"] <= 150))
    return rows


if __name__ == "__main__":
    main()
