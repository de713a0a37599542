"""Screenshots of the real `optiinfra-tui` in a real terminal: screenshots/*.svg and *.png.

    python screenshots/make_screenshots.py

What a user sees at 160x45, taken the way a user gets there: a throwaway data dir is seeded
(a history with successful, failed, retrying, running and queued runs; another consumer's
heartbeat; 45 days of Vultr cost lines in chDB), then `optiinfra-tui --workers 2` is
launched in a tmux pane on it, driven with `tmux send-keys`, and each screen is read back
with `tmux capture-pane -p -e` (text with its colours). rich turns those ANSI lines into an
SVG (`Text.from_ansi`, `Console(record=True).export_svg`), resvg-py into a PNG.
The Vultr API is the local test double (tests/fake_vultr.py): nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import resvg_py
from rich.console import Console
from rich.text import Text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from fake_vultr import FakeVultr  # noqa: E402
from tui_data import env_for, seed_showcase  # noqa: E402

from optiinfra_tui.rows import CostRow  # noqa: E402
from optiinfra_tui.settings import load_settings  # noqa: E402
from optiinfra_tui.storage.history import CollectionRun, WorkerHeartbeat, utcnow  # noqa: E402
from optiinfra_tui.worker.runtime import Runtime  # noqa: E402

SIZE = (160, 45)
FONT = "DejaVu Sans Mono"
SHOTS = ("main", "collect", "run_detail", "costs", "help", "filter")
SERVICES = (("Vultr Cloud Compute", "hours", Decimal("18.40")),
            ("Block Storage", "hours", Decimal("4.10")),
            ("Load Balancer", "hours", Decimal("3.30")))
CONFIG = """\
[[schedules]]
name = "vultr-cost"
provider = "vultr"
data_types = ["cost"]
interval = 900

[[schedules]]
name = "vultr-inventory"
provider = "vultr"
data_types = ["account", "resource"]
interval = 3600
"""


def seed_costs(store, now: datetime) -> None:
    """45 days of Vultr lines: last month's as invoiced, this month's as the pending estimate."""
    rows = []
    month = now.date().replace(day=1)
    for back in range(45):
        day = now.date() - timedelta(days=back)
        for k, (service, unit, base) in enumerate(SERVICES):
            amount = base + Decimal((back * 7 + k * 3) % 11) / 4
            start = datetime(day.year, day.month, day.day)
            line = hashlib.sha1(f"{day}{service}".encode()).hexdigest()
            rows.append(CostRow(
                line_id=line, customer_id="default_customer", provider_name="vultr",
                billing_account_id="acct-1", invoice_id="" if day >= month else "inv-1001",
                billed_cost=amount, effective_cost=amount, list_cost=amount,
                list_unit_price=Decimal("0.0300"), billing_currency="USD",
                charge_period_start=start, charge_period_end=start + timedelta(days=1),
                billing_period=day.replace(day=1), charge_category="Usage",
                charge_description=f"{service} [web-{k}]", service_name=service,
                resource_id=f"res-{k}", resource_name=f"web-{k}", region_id="ewr",
                pricing_quantity=Decimal(24), pricing_unit=unit, is_estimate=day >= month,
                run_id=1, collected_at=now))
    store.write_cost_lines(rows)


def seed(env: dict[str, str]) -> None:
    """In a child process: chDB allows one process per data path, and the dashboard needs it."""
    from optiinfra_tui.worker import schedules

    rt = Runtime(load_settings(env))
    rt.history()
    now = utcnow().replace(microsecond=0)
    ids = seed_showcase(now)
    seed_costs(rt.metrics(), now)
    # The other consumer ran the current slots: the dashboard queues nothing while shooting.
    for s in rt.settings.schedules:
        slot = schedules.current_slot(s, now)
        if slot is not None:
            schedules.claim(s.name, slot, "ops-1:4242")
    newer = CollectionRun.select().where(CollectionRun.id > ids["config_failed"]).count()
    rt.close()
    print(newer)  # rows above the failed config run in the history, newest first


class Tmux:
    def __init__(self, env: dict[str, str]) -> None:
        self.cmd = ["tmux", "-L", f"optiinfra-shots-{uuid.uuid4().hex[:6]}"]
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("COLUMNS", "LINES", "PYTHONDONTWRITEBYTECODE")}
        exe = Path(sys.executable).with_name("optiinfra-tui")
        # A modern terminal: 24-bit colour (tmux keeps it, and capture-pane -e gives it back).
        pane_env = {**env, "TERM": "xterm-256color", "COLORTERM": "truecolor",
                    "LANG": "C.UTF-8", "PATH": os.environ.get("PATH", "")}
        self.run("new-session", "-d", "-s", "s", "-x", str(SIZE[0]), "-y", str(SIZE[1]),
                 *[a for k, v in pane_env.items() for a in ("-e", f"{k}={v}")],
                 f"exec {exe} --workers 2")

    def run(self, *args: str) -> str:
        return subprocess.run([*self.cmd, *args], check=True, capture_output=True, text=True,
                              env=self.env).stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "s", *keys)

    def text(self) -> str:
        return self.run("capture-pane", "-p", "-t", "s")

    def ansi(self) -> str:
        return self.run("capture-pane", "-p", "-e", "-N", "-t", "s")

    def wait(self, predicate, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.text()):
            if time.monotonic() > deadline:
                raise SystemExit(f"not on screen after {timeout} s:\n{self.text()}")
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run([*self.cmd, "kill-server"], capture_output=True, env=self.env)


def keep_beating(env: dict[str, str], stop: threading.Event) -> None:
    """The seeded other consumer stays alive while shooting (else it turns stale at 15 s)."""
    rt = Runtime(load_settings(env))
    rt.history()
    while not stop.wait(1.0):
        WorkerHeartbeat.update(beat_at=utcnow()).where(
            WorkerHeartbeat.consumer_id == "ops-1:4242").execute()


def to_svg(ansi: str, path: Path) -> None:
    lines = ansi.split("\n")[:SIZE[1]]
    console = Console(record=True, width=SIZE[0], height=SIZE[1], file=io.StringIO(),
                      color_system="truecolor", force_terminal=True, legacy_windows=False)
    for line in lines:
        console.print(Text.from_ansi(line, no_wrap=True, end=""), overflow="crop", crop=True,
                      no_wrap=True)
    path.write_text(console.export_svg(title="optiinfra-tui"))


def to_png(svg: Path) -> Path:
    png = svg.with_suffix(".png")
    png.write_bytes(bytes(resvg_py.svg_to_bytes(svg_path=str(svg), font_family=FONT,
                                                monospace_family=FONT)))
    return png


def shoot(t: Tmux, config_failed_row: int, out: Path) -> list[Path]:
    shots = []

    def save(name: str) -> None:
        time.sleep(0.6)  # let the last repaint land
        svg = out / f"{name}.svg"
        to_svg(t.ansi(), svg)
        shots.append(svg)

    t.wait(lambda s: "page 1" in s and "MTD" in s and "q Quit" in s and "Worker-1" in s
           and "metrics (chdb) ●" in s)
    save("main")
    t.keys("c")
    t.wait(lambda s: "Start a collection" in s)
    save("collect")
    t.keys("Escape")
    t.wait(lambda s: "Start a collection" not in s)
    for _ in range(config_failed_row):
        t.keys("Down")
    t.keys("Enter")
    t.wait(lambda s: "Attempts" in s and "VULTR_API_KEY" in s)
    save("run_detail")
    t.keys("Escape")
    t.wait(lambda s: "Attempts" not in s)
    t.keys("Tab", "Tab", "Tab", "Enter")  # history -> workers -> queue -> costs; enter opens
    t.wait(lambda s: "Costs (from ClickHouse)" in s and "by provider" in s)
    save("costs")
    t.keys("Escape")
    t.wait(lambda s: "Costs (from ClickHouse)" not in s)
    t.keys("BTab", "BTab", "BTab", "?")  # back to the history, as a user would be
    t.wait(lambda s: "Log file" in s)
    save("help")
    t.keys("Escape")
    t.wait(lambda s: "Log file" not in s)
    t.keys("/")
    t.wait(lambda s: "Filter the history" in s)
    save("filter")
    t.keys("Escape")
    t.keys("q")
    return shots


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--seed":
        seed(env_for(Path(sys.argv[2]), schedules=CONFIG))
        return
    if sys.argv[1:] == ["--browser"]:  # the browser's picture alone
        browser_shot()
        return
    if not shutil.which("tmux"):
        raise SystemExit("tmux is needed: the screenshots are of the program in a terminal.")
    root = Path(tempfile.mkdtemp(prefix="optiinfra-screens-"))
    home = root / "home"
    stop = threading.Event()
    with FakeVultr() as api:
        env = env_for(home, schedules=CONFIG,
                      VULTR_API_KEY=api.token, VULTR_API_URL=api.url)
        seeded = subprocess.run([sys.executable, __file__, "--seed", str(home)], check=True,
                                capture_output=True, text=True, env={**os.environ, **env})
        row = int(seeded.stdout.split()[-1])
        beat = threading.Thread(target=keep_beating, args=(env, stop), daemon=True)
        beat.start()
        t = Tmux(env)
        try:
            svgs = shoot(t, row, HERE)
        finally:
            stop.set()
            t.close()
    for svg in svgs:
        print(svg.relative_to(HERE.parent), to_png(svg).relative_to(HERE.parent))
    shutil.rmtree(root, ignore_errors=True)
    browser_shot()


def browser_shot() -> None:
    """screenshots/browser.png: the browser test's own page (`serve`, headless Chromium, `c`
    then `enter`), saved here as it passes."""
    test = "tests/test_web.py::test_in_a_real_browser_c_then_enter_collects_and_the_run_succeeds"
    subprocess.run([sys.executable, "-m", "pytest", "-q", test], cwd=HERE.parent, check=True,
                   env={**os.environ, "OPTIINFRA_SCREENSHOTS": "1"})
    print((HERE / "browser.png").relative_to(HERE.parent))


if __name__ == "__main__":
    main()
