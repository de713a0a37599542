"""Dashboard figures: first frame (empty and 100,000-run history), paging, idle CPU.

    python bench/bench_dashboard.py [--runs 100000] [--idle 10]

Prints figures; asserts nothing. The idle figure is for the real `optiinfra-tui` process
(2 embedded workers) in a tmux terminal when tmux is installed, else for the app headless.
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

from optiinfra_tui.runtime import Runtime  # noqa: E402
from optiinfra_tui.settings import load_settings  # noqa: E402
from optiinfra_tui.storage.history import utcnow  # noqa: E402
from optiinfra_tui.tui.app import DashboardApp  # noqa: E402

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


def idle_in_tmux(home: Path, seconds: float) -> float | None:
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
        before, t0 = proc.cpu_times(), time.monotonic()
        time.sleep(seconds)
        after, t1 = proc.cpu_times(), time.monotonic()
        used = (after.user - before.user) + (after.system - before.system)
        return 100 * used / (t1 - t0)
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
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="optiinfra-bench-"))
    try:
        empty, _, _ = asyncio.run(first_frame(runtime(root / "empty")))
        print(f"first frame, empty history:            {empty * 1000:8.0f} ms")
        lat = asyncio.run(activity_latency(runtime(root / "activity")))
        print(f"task start -> workers panel shows busy: median {statistics.median(lat) * 1000:5.1f} ms,"
              f" max {max(lat) * 1000:5.1f} ms")

        big = root / "big"
        rt = runtime(big)
        t0 = time.perf_counter()
        seed_bulk(args.runs, now=utcnow())
        print(f"seeded {args.runs:,} runs in {time.perf_counter() - t0:.1f} s")
        full, windows, steps = asyncio.run(first_frame(rt, paging=min(20, args.runs // 100 - 1)))
        print(f"first frame, {args.runs:,} runs:          {full * 1000:8.0f} ms")
        print(f"next window of 100 runs (keyset):       median {statistics.median(windows) * 1000:5.1f} ms,"
              f" max {max(windows) * 1000:5.1f} ms over {len(windows)} moves")
        print(f"pagedown within a window:               median {statistics.median(steps) * 1000:5.1f} ms,"
              f" max {max(steps) * 1000:5.1f} ms")
        rt.close()

        if shutil.which("tmux"):
            cpu = idle_in_tmux(big, args.idle)
            print(f"idle CPU, optiinfra-tui --workers 2 in tmux, {args.runs:,} runs: "
                  f"{cpu:.1f} % of a core over {args.idle:.0f} s")
        cpu = asyncio.run(idle_headless(runtime(big), args.idle))
        print(f"idle CPU, app headless (no workers), {args.runs:,} runs:       "
              f"{cpu:.1f} % of a core over {args.idle:.0f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
