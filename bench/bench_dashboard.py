"""Dashboard figures: first frame (in a real terminal and through Pilot), paging, idle CPU.

    python bench/bench_dashboard.py [--runs 100000] [--idle 10] [--idle-rounds 3] [--launches 5]

Prints figures; asserts nothing. With tmux installed, the first frame is also measured as a
user meets it: from launching `optiinfra-tui --workers 2` in a 160x45 tmux pane to
capture-pane showing the full frame (every panel title and the footer's `q Quit`). The idle
figure is for that real process in tmux when tmux is installed, else for the app headless.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tui_data import env_for, seed_bulk  # noqa: E402

from optiinfra_tui.settings import load_settings  # noqa: E402
from optiinfra_tui.storage.history import utcnow  # noqa: E402
from optiinfra_tui.tui.app import DashboardApp  # noqa: E402
from optiinfra_tui.worker.runtime import Runtime  # noqa: E402

SIZE = (160, 48)


def runtime(home: Path) -> Runtime:
    rt = Runtime(load_settings(env_for(home)))
    rt.history()
    return rt


async def _wait(predicate, timeout: float = 30.0) -> None:
    # Plain event-loop polling: Pilot's own waits (idle detection) would dwarf what is measured.
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the dashboard did not get there")
        await asyncio.sleep(0.001)


async def _drawn(app) -> None:
    """Until the screen has been painted with what the widgets now hold."""
    await asyncio.sleep(0)
    await _wait(lambda: not app.screen._dirty_widgets)


async def first_frame(rt: Runtime, paging: int = 0) -> tuple[float, list[float], list[float]]:
    """Seconds from starting the app to its first history window on screen; page moves."""
    app = DashboardApp(rt, costs_enabled=False, costs_disabled_reason="bench")
    windows: list[float] = []
    steps: list[float] = []
    start = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        table = app.main.history
        await _wait(lambda: table.page is not None)
        await _drawn(app)
        first = time.perf_counter() - start
        for _ in range(paging):
            page = table.page.query.page
            table.move_cursor(row=table.row_count - 1)
            await _drawn(app)
            t0 = time.perf_counter()
            table.action_cursor_down()  # past the window's last row: the next window
            await _wait(lambda p=page: table.page.query.page == p + 1)
            await _drawn(app)
            windows.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            table.action_page_down()
            await _drawn(app)
            steps.append(time.perf_counter() - t0)
        await pilot.press("q")
    return first, windows, steps


async def activity_latency(rt: Runtime, times: int = 10) -> list[float]:
    """Seconds from a worker thread starting a task to the workers panel showing it busy."""
    import threading

    from optiinfra_tui.tui.widgets.workers import WorkersPanel

    rt.activity.register("Worker-1")
    app = DashboardApp(rt, poll=30.0, costs_enabled=False, costs_disabled_reason="bench")
    out = []
    async with app.run_test(size=SIZE):
        panel = app.main.query_one(WorkersPanel)
        await _wait(lambda: app.main.history.page is not None)
        for i in range(times):
            for call, state in ((lambda i=i: rt.activity.began(i, "bench"), "busy"),
                                (lambda: rt.activity.ended(True), "idle")):
                t0 = time.perf_counter()
                t = threading.Thread(target=call, name="Worker-1")
                t.start()
                t.join()
                await _wait(lambda s=state: panel._rows and panel._rows[0][3].plain == s)
                await _drawn(app)
                if state == "busy":
                    out.append(time.perf_counter() - t0)
    return out


FULL_FRAME = ("Workers", "Queue", "History", "Last hour")


def first_frame_in_tmux(home: Path, launches: int, size: tuple[int, int] = (160, 45)
                        ) -> list[dict[str, float]]:
    """Per launch, seconds from starting the command to: any text, the full frame, history.

    Each launch is a fresh process in the same pane (respawn-pane), on the same data dir;
    the screen is read with capture-pane every few ms, so figures are good to ~10 ms.
    """
    sock = f"optiinfra-bench-{uuid.uuid4().hex[:6]}"
    exe = Path(sys.executable).with_name("optiinfra-tui")
    home.parent.mkdir(parents=True, exist_ok=True)
    config = home.parent / "no-schedules.toml"
    config.write_text("schedules = []\n")
    env = {"OPTIINFRA_HOME": str(home), "OPTIINFRA_CONFIG": str(config),
           "TERM": "xterm-256color", "LANG": "C.UTF-8", "PATH": os.environ.get("PATH", "")}
    tmux = ["tmux", "-L", sock]
    # As a user's shell runs it: no COLUMNS/LINES inherited from here, and Python caching
    # bytecode (PYTHONDONTWRITEBYTECODE would recompile every module on every launch).
    clean_env = {k: v for k, v in os.environ.items()
                 if k not in ("COLUMNS", "LINES", "PYTHONDONTWRITEBYTECODE")}

    def run(*args: str) -> str:
        return subprocess.run([*tmux, *args], check=True, capture_output=True, text=True,
                              env=clean_env).stdout

    run("new-session", "-d", "-s", "b", "-x", str(size[0]), "-y", str(size[1]),
        *[a for k, v in env.items() for a in ("-e", f"{k}={v}")], "sleep 3600")
    run("set-option", "-g", "remain-on-exit", "on")
    out = []
    try:
        for _ in range(launches):
            seen: dict[str, float] = {}
            t0 = time.monotonic()
            run("respawn-pane", "-k", "-t", "b", f"exec {exe} --workers 2")
            while time.monotonic() - t0 < 30 and len(seen) < 3:
                screen = run("capture-pane", "-p", "-t", "b")
                t = time.monotonic() - t0
                rows = screen.split("\n")
                if screen.strip():
                    seen.setdefault("text", t)
                if len(rows) >= size[1] and "q Quit" in rows[size[1] - 1] and \
                        all(title in screen for title in FULL_FRAME):
                    seen.setdefault("frame", t)
                if "page 1" in screen:
                    seen.setdefault("history", t)
                time.sleep(0.003)
            out.append(seen)
            run("send-keys", "-t", "b", "q")
            deadline = time.monotonic() + 15
            while run("display-message", "-p", "-t", "b", "#{pane_dead}").strip() != "1":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            time.sleep(0.5)  # let the machine settle between launches
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return out


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a process (Python threads share the process's name;
    chDB's native threads carry their own)."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf(
            "SC_CLK_TCK")
    return out


def idle_in_tmux(home: Path, seconds: float, rounds: int = 1
                 ) -> tuple[list[float], dict[str, float]]:
    """Per round, % of a core the idle dashboard uses; and the last round's % per thread."""
    import psutil

    sock = f"optiinfra-bench-{uuid.uuid4().hex[:6]}"
    exe = Path(sys.executable).with_name("optiinfra-tui")
    env = [a for k, v in {"OPTIINFRA_HOME": str(home), "TERM": "xterm-256color",
                          "PATH": os.environ.get("PATH", "")}.items() for a in ("-e", f"{k}={v}")]
    tmux = ["tmux", "-L", sock]
    subprocess.run([*tmux, "new-session", "-d", "-s", "b", "-x", "160", "-y", "48", *env,
                    f"exec {exe} --workers 2"], check=True)
    try:
        pid = int(subprocess.run([*tmux, "display-message", "-p", "-t", "b", "#{pane_pid}"],
                                 check=True, capture_output=True, text=True).stdout)
        proc = psutil.Process(pid)
        time.sleep(8)  # start-up, first reads, first health check, chDB opened by the agent
        out, threads = [], {}
        for _ in range(rounds):
            before, per_before, t0 = proc.cpu_times(), thread_cpu(pid), time.monotonic()
            time.sleep(seconds)
            after, per_after, t1 = proc.cpu_times(), thread_cpu(pid), time.monotonic()
            used = (after.user - before.user) + (after.system - before.system)
            out.append(100 * used / (t1 - t0))
            threads = {name: 100 * (cpu - per_before.get(name, 0.0)) / (t1 - t0)
                       for name, cpu in per_after.items()}
        return out, threads
    finally:
        subprocess.run([*tmux, "send-keys", "-t", "b", "q"], capture_output=True)
        time.sleep(3)
        subprocess.run([*tmux, "kill-server"], capture_output=True)


async def idle_headless(rt: Runtime, seconds: float) -> float:
    app = DashboardApp(rt, costs_enabled=False, costs_disabled_reason="bench")
    async with app.run_test(size=SIZE) as pilot:
        await _wait(lambda: app.main.history.page is not None)
        await asyncio.sleep(3)
        c0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        c1, t1 = time.process_time(), time.monotonic()
        await pilot.press("q")
    return 100 * (c1 - c0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--launches", type=int, default=5)
    ap.add_argument("--idle-rounds", type=int, default=3, help="idle CPU: median of rounds")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="optiinfra-bench-"))
    try:
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} cores")
        if shutil.which("tmux"):
            # The first launch makes the data dir (history schema, queue, chDB on first use);
            # the others start on it as a returning user does.
            launches = first_frame_in_tmux(root / "terminal" / "home", args.launches + 1)
            first, rest = launches[0], launches[1:]

            def figure(key: str) -> str:
                vals = [x[key] for x in rest if key in x]
                if not vals:
                    return "never"
                return (f"median {statistics.median(vals) * 1000:5.0f} ms, "
                        f"max {max(vals) * 1000:5.0f} ms")

            print(f"launch -> full frame in tmux 160x45 ({len(rest)} launches): {figure('frame')}"
                  f"  (first launch, new data dir: {first.get('frame', 0) * 1000:.0f} ms)")
            print(f"launch -> first text in tmux:                      {figure('text')}")
            print(f"launch -> history window in tmux:                  {figure('history')}")
        empty, _, _ = asyncio.run(first_frame(runtime(root / "empty")))
        print(f"first frame through Pilot, empty history:  {empty * 1000:8.0f} ms")
        lat = asyncio.run(activity_latency(runtime(root / "activity")))
        print(f"task start -> workers panel shows busy: median {statistics.median(lat) * 1000:5.1f} ms,"
              f" max {max(lat) * 1000:5.1f} ms")

        big = root / "big"
        rt = runtime(big)
        t0 = time.perf_counter()
        seed_bulk(args.runs, now=utcnow())
        print(f"seeded {args.runs:,} runs in {time.perf_counter() - t0:.1f} s")
        full, windows, steps = asyncio.run(first_frame(rt, paging=min(20, args.runs // 100 - 1)))
        print(f"first frame through Pilot, {args.runs:,} runs:{full * 1000:8.0f} ms")
        print(f"next window of 100 runs (keyset):       median {statistics.median(windows) * 1000:5.1f} ms,"
              f" max {max(windows) * 1000:5.1f} ms over {len(windows)} moves")
        print(f"pagedown within a window:               median {statistics.median(steps) * 1000:5.1f} ms,"
              f" max {max(steps) * 1000:5.1f} ms")
        rt.close()

        if shutil.which("tmux"):
            cpus, threads = idle_in_tmux(big, args.idle, args.idle_rounds)
            print(f"idle CPU, optiinfra-tui --workers 2 in tmux, {args.runs:,} runs: "
                  f"{statistics.median(cpus):.1f} % of a core over {args.idle:.0f} s "
                  f"(median of {len(cpus)}: {', '.join(f'{c:.1f}' for c in cpus)})")
            busy = sorted(((pct, name) for name, pct in threads.items() if pct >= 0.05),
                          reverse=True)
            print("  by thread (last round): "
                  + ", ".join(f"{name} {pct:.2f} %" for pct, name in busy))
        cpu = asyncio.run(idle_headless(runtime(big), args.idle))
        print(f"idle CPU, app headless (no workers), {args.runs:,} runs:       "
              f"{cpu:.1f} % of a core over {args.idle:.0f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
