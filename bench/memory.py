"""Resident memory of the dashboard (distributed and embedded), and which CLI commands load chDB.

    python bench/memory.py [--rounds 3]

The dashboard is `optiinfra-tui --workers 2` in a real terminal (tmux), measured once its
first frame is drawn, then after 20 collections have gone through its workers. Distributed:
our own Redis and PostgreSQL, CLICKHOUSE_URL pointing at a port where nothing listens, so
no ClickHouse is in the process. Embedded: SQLite queue and history, chDB in-process,
collecting 10,000 invoice lines from a local Vultr-shaped server. While each dashboard
runs, `collect --wait`, `status` and `history` run as processes of their own; each reports
its peak RSS and whether chdb, clickhouse_connect, pandas or textual were imported.
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

from _common import (  # noqa: E402
    ROOT,
    Postgres,
    Redis,
    figure,
    file_rss_mb,
    fmt,
    free_port,
    machine,
    peak_rss_mb,
    rss_mb,
    save_results,
    tempdir,
    wait_until,
)

EXE = str(Path(sys.executable).parent / "optiinfra-tui")
TARGET_MB = 120.0
EMBEDDED_TARGET_MB = 300.0
TOKEN = "bench-memory-token"
WATCHED = ("chdb", "clickhouse_connect", "pandas", "textual", "httpx")
# Runs a CLI command in this interpreter and writes which of WATCHED it imported.
PROBE = ("import atexit, json, os, sys\n"
         "def _report():\n"
         f"    mods = [m for m in {WATCHED!r} if m in sys.modules]\n"
         "    with open(os.environ['BENCH_MODULES_OUT'], 'w') as f:\n"
         "        json.dump(mods, f)\n"
         "atexit.register(_report)\n"
         "from optiinfra_tui.cli import main\n"
         "main(sys.argv[1:])\n")


class Dashboard:
    """`optiinfra-tui --workers 2` in a 160x48 tmux session on a private socket."""

    def __init__(self, env: dict) -> None:
        self.socket = f"bench-memory-{os.getpid()}"
        self.env = env
        subprocess.run(["tmux", "-L", self.socket, "new-session", "-d", "-s", "m", "-x", "160",
                        "-y", "48", f"exec {EXE} --workers 2"], env=env, check=True)
        self.pid = int(self._tmux("display-message", "-p", "-t", "m", "#{pane_pid}"))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, env=self.env).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "m")

    def wait_drawn(self, timeout: float = 60) -> float:
        start = time.monotonic()
        if not wait_until(lambda: all(w in self.screen() for w in ("History", "Workers",
                                                                      "page 1")), timeout, 0.1):
            raise RuntimeError("the dashboard never drew:\n" + self.screen())
        return time.monotonic() - start

    def close(self) -> None:
        self._tmux("send-keys", "-t", "m", "q")
        if not wait_until(lambda: not os.path.exists(f"/proc/{self.pid}"), 30, 0.1):
            os.kill(self.pid, 9)
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def probe(env: dict, *args: str) -> dict:
    """Run `optiinfra-tui ARGS` in a process of its own: exit status, peak RSS, imports."""
    home = Path(env["OPTIINFRA_HOME"])
    out = home / f"modules-{args[0]}.json"
    proc = subprocess.Popen([sys.executable, "-c", PROBE, *args],
                            env=dict(env, BENCH_MODULES_OUT=str(out)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    modules = json.loads(out.read_text()) if out.exists() else ["?"]
    return {"exit": proc.returncode, "peak_mb": usage.ru_maxrss / 1024, "modules": modules}


def collect_runs(env: dict, n: int) -> None:
    """Queue n collections (as `collect` would) and wait until the dashboard ran them all."""
    from optiinfra_tui.settings import load_settings
    from optiinfra_tui.worker import runs
    from optiinfra_tui.worker.collection import request_collection
    from optiinfra_tui.worker.runtime import Runtime

    rt = Runtime(load_settings(env))
    rt.history()
    ids = [request_collection(rt, rt.settings.default_customer_id, "vultr", "cost",
                              trigger="manual").id for _ in range(n)]
    if not wait_until(lambda: all(runs.get_run(i).is_final for i in ids), 300, 0.2):
        raise RuntimeError("the dashboard's workers did not finish the collections")


def measure(mode: str, env: dict, runs_n: int) -> dict:
    dash = Dashboard(env)
    try:
        drawn_s = dash.wait_drawn()
        time.sleep(3)  # the first polls of every panel
        first = rss_mb(dash.pid)
        collect_runs(env, runs_n)
        time.sleep(3)
        after = rss_mb(dash.pid)
        after_file = file_rss_mb(dash.pid)
        cli = {cmd: probe(env, *args) for cmd, args in (
            ("collect --wait", ("collect", "vultr", "--wait")),
            ("status", ("status",)),
            ("history", ("history", "--limit", "20")))}
        peak = peak_rss_mb(dash.pid)
    finally:
        dash.close()
    return {"drawn_s": drawn_s, "first_mb": first, "after_mb": after, "peak_mb": peak,
            "after_file_mb": after_file, "cli": cli}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not shutil.which("tmux"):
        raise SystemExit("tmux is needed to run the dashboard in a terminal")
    print(f"dashboard memory, 2 workers: {args.rounds} rounds per mode; {machine()}", flush=True)

    base = {k: v for k, v in os.environ.items()
            if k not in ("REDIS_URL", "REDIS_HOST", "DATABASE_URL", "CLICKHOUSE_URL",
                         "VULTR_API_KEY", "VULTR_API_URL", "TMUX")}
    base.update(TERM="xterm-256color", COLLECTION_INTERVAL="86400", RETRY_DELAY="0.2",
                MAX_RETRIES="1", VULTR_MAX_RPS="1000")
    gen = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_vultr_gen.py"), "--port",
                            str(gen_port := free_port()), "--invoices", "20", "--items", "500",
                            "--token", TOKEN], stdout=subprocess.PIPE, text=True)
    gen.stdout.readline()
    server, pg = Redis().start(), Postgres()
    pg.start()
    results: dict[str, list[dict]] = {"distributed": [], "embedded": []}
    try:
        for r in range(args.rounds):
            for mode in results:
                # The data dir private, as the app makes it: one others can read gets a
                # warning toast, over the text the first-frame figure waits for.
                home = tempdir(f"bench-memory-{mode}-") / "home"
                home.mkdir(mode=0o700)
                env = dict(base, OPTIINFRA_HOME=str(home), VULTR_API_KEY=TOKEN,
                           VULTR_API_URL=f"http://127.0.0.1:{gen_port}/v2")
                if mode == "distributed":
                    db = f"mem{r}"
                    env.update(REDIS_URL=server.url(r % 16), CLICKHOUSE_URL=
                               f"http://127.0.0.1:{free_port()}",
                               DATABASE_URL=pg.server.create_database(db))
                res = measure(mode, env, 20 if mode == "distributed" else 2)
                results[mode].append(res)
                cli = "; ".join(f"{c}: {v['peak_mb']:.0f} MB {v['modules']}"
                                for c, v in res["cli"].items())
                print(f"  round {r + 1} {mode:<11} first frame {res['drawn_s']:.1f} s, RSS "
                      f"{res['first_mb']:.0f} MB, after runs {res['after_mb']:.0f} MB, peak "
                      f"{res['peak_mb']:.0f} MB | {cli}", flush=True)
                shutil.rmtree(home.parent, ignore_errors=True)
    finally:
        gen.terminate()
        server.stop()
        pg.stop()
    report(results)
    save_results("memory", results)
    return results


def report(results: dict) -> None:
    print("results: median [min-max] over rounds", flush=True)
    for mode, rounds in results.items():
        after = [x["after_mb"] for x in rounds]
        target = mode == "distributed"
        figure(f"{mode} dashboard RSS at first frame", fmt([x["first_mb"] for x in rounds], "MB", 0))
        figure(f"{mode} dashboard RSS after collections", fmt(after, "MB", 0),
               "<= 120 MB" if target else "<= 300 MB",
               max(after) <= TARGET_MB if target else max(after) <= EMBEDDED_TARGET_MB)
        figure(f"{mode} dashboard RSS that is mapped files (code)",
               fmt([x["after_file_mb"] for x in rounds], "MB", 0))
        figure(f"{mode} dashboard peak RSS", fmt([x["peak_mb"] for x in rounds], "MB", 0))
        for cmd in rounds[0]["cli"]:
            mods = sorted({m for x in rounds for m in x["cli"][cmd]["modules"]})
            no_chdb = "chdb" not in mods
            figure(f"{mode} `{cmd}` peak RSS",
                   fmt([x["cli"][cmd]["peak_mb"] for x in rounds], "MB", 0)
                   + f", imports {', '.join(mods) or 'none watched'}", "no chDB", no_chdb)


def readme_rows(results: dict) -> list[tuple]:
    """The dashboard's RSS per mode for bench/run.py's README table, with how much of it is
    mapped code: (figure, ours, peers, target, met)."""
    import statistics

    rows = []
    for mode, rounds in results.items():
        after = statistics.median(x["after_mb"] for x in rounds)
        code = statistics.median(x.get("after_file_mb", float("nan")) for x in rounds)
        target = TARGET_MB if mode == "distributed" else EMBEDDED_TARGET_MB
        rows.append((f"Dashboard RSS, 2 workers, {mode}, after collections",
                     f"{after:.0f} MB ({code:.0f} MB of it mapped code)", "",
                     f"<= {target:.0f} MB", after <= target))
    return rows


if __name__ == "__main__":
    main()
