"""`optiinfra-tui` in a real terminal (tmux): keys in with send-keys, the screen read back with
capture-pane. What a user sees, including that quitting leaves a clean shell."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

REQUIRE = os.environ.get("OPTIINFRA_REQUIRE_SERVICES") == "1"
EXE = Path(sys.executable).with_name("optiinfra-tui")
PROMPT = "tmux-test$ "


class Tmux:
    """One tmux server on a private socket, one session (160x48 unless told) running a plain bash."""

    def __init__(self, env: dict[str, str], size: tuple[int, int] = (160, 48)) -> None:
        self.socket = f"optiinfra-test-{uuid.uuid4().hex[:8]}"
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": env["OPTIINFRA_HOME"],
                "PS1": PROMPT, "TERM": "xterm-256color", "LANG": "C.UTF-8"}
        self._tmux("new-session", "-d", "-s", "t", "-x", str(size[0]), "-y", str(size[1]),
                   *[a for k, v in {**base, **env}.items() for a in ("-e", f"{k}={v}")],
                   "bash --norc --noprofile")
        self.keys(f"PS1='{PROMPT}'; clear", "Enter")

    def _tmux(self, *args: str) -> str:
        # The server's environment is this one without COLUMNS/LINES: readline (loaded by
        # pytest) exports them at the C level, and the shell would pass them on. Tests that
        # want them ask for them.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, text=True,
                              capture_output=True, timeout=10, env=env).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def flag(self, name: str) -> str:
        return self._tmux("display-message", "-p", "-t", "t", f"#{{{name}}}").strip()

    def wait(self, predicate, timeout: float, every: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            found = predicate(text)
            if found:
                return found
            time.sleep(every)
        raise AssertionError(f"not on screen within {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=10)


@pytest.fixture
def tmux_env(tmp_path):
    if not shutil.which("tmux"):
        if REQUIRE:
            pytest.fail("tmux is required (OPTIINFRA_REQUIRE_SERVICES=1) but missing")
        pytest.skip("tmux not installed")
    sessions = []
    # No schedules: a slot falling due mid-test would add a run of its own.
    config = tmp_path / "no-schedules.toml"
    config.write_text("schedules = []\n")

    def start(size: tuple[int, int] = (160, 48), **env: str) -> Tmux:
        t = Tmux({"OPTIINFRA_HOME": str(tmp_path / "home"), "OPTIINFRA_CONFIG": str(config),
                  "RETRY_DELAY": "0.5", **env}, size)
        sessions.append(t)
        return t

    yield start
    for t in sessions:
        t.close()


def run_dashboard(t: Tmux) -> None:
    t.wait(lambda s: s.rstrip().endswith(PROMPT.strip()), 10)
    t.keys(f"{EXE} --workers 2", "Enter")
    t.wait(lambda s: "History" in s and "Workers" in s and "page 1" in s, 30)


def quit_cleanly(t: Tmux) -> None:
    started = time.monotonic()
    t.keys("q")
    t.wait(lambda s: s.rstrip().endswith(PROMPT.strip()) and "History" not in s, 10)
    assert time.monotonic() - started < 10
    assert t.flag("alternate_on") == "0" and t.flag("mouse_any_flag") == "0"
    assert t.flag("cursor_flag") == "1"
    t.keys("echo exit-$?-clean", "Enter")
    screen = t.wait(lambda s: "exit-0-clean" in s.split("echo")[-1] and s, 5)
    assert "Traceback" not in screen and "Error" not in screen and "WARNING" not in screen


def test_c_enter_shows_the_vultr_run_as_success_with_its_rows(tmux_env, fake_vultr):
    t = tmux_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    run_dashboard(t)
    t.keys("c")
    t.wait(lambda s: "Start a collection" in s, 5)
    t.keys("Enter")
    started = time.monotonic()
    rows = fake_vultr.line_count()
    line = re.compile(rf"^\s*│\s+1\s+success\s+vultr\s+default_customer\s+cost\s+manual\s+1/\d+"
                      rf"\s+{rows:,}\s", re.M)
    seen_busy = False

    def done(screen: str):
        nonlocal seen_busy
        seen_busy |= bool(re.search(r"Worker-\d\s+busy", screen))
        return line.search(screen)

    t.wait(done, 5, every=0.02)
    took = time.monotonic() - started
    assert took < 5, took
    assert seen_busy, "the workers panel never showed a busy worker during the run"
    quit_cleanly(t)


def test_without_a_key_the_run_fails_and_its_detail_names_vultr_api_key(tmux_env):
    t = tmux_env(VULTR_API_URL="http://127.0.0.1:9/v2")
    run_dashboard(t)
    t.keys("c")
    t.wait(lambda s: "Start a collection" in s, 5)
    t.keys("Enter")
    # At any width: narrow terminals drop the provider and customer columns.
    t.wait(lambda s: re.search(r"│\s+1\s+failed\s.*config: VULTR_API_KEY", s), 5)
    t.keys("Enter")
    t.wait(lambda s: "Run 1" in s and "VULTR_API_KEY" in s, 5)
    t.keys("Escape")
    # The detail is gone: a q sent on the heels of the escape reads as alt+q.
    t.wait(lambda s: "History" in s and "Run 1" not in s, 5)
    quit_cleanly(t)


def test_sigterm_quits_like_q_and_restores_the_terminal(tmux_env):
    t = tmux_env()
    run_dashboard(t)
    shell = t.flag("pane_pid")
    (dashboard,) = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
    started = time.monotonic()
    os.kill(int(dashboard), signal.SIGTERM)
    t.wait(lambda s: s.rstrip().endswith(PROMPT.strip()) and "History" not in s, 10)
    assert time.monotonic() - started < 10
    assert t.flag("alternate_on") == "0" and t.flag("cursor_flag") == "1"
    t.keys("echo exit-$?-clean", "Enter")  # 0: it quit by itself, not killed by the signal
    t.wait(lambda s: "exit-0-clean" in s.split("echo")[-1], 5)


def fills(width: int, height: int):
    """A predicate: the dashboard's frame covers exactly width x height, nothing stale around it.

    The header on the first row, the footer (with q Quit) on the last, and every row of the
    History, Last hour and top panels ending in a border on the last column.
    """
    def check(screen: str) -> bool:
        rows = screen.split("\n")[:height]
        if len(rows) < height or not rows[0].startswith(" OptiInfra"):
            return False
        if "q Quit" not in rows[-1] or "^p palette" not in rows[-1]:
            return False
        body = rows[1:-1]
        # Every panel row is drawn to the last column: a stale or small frame leaves short rows
        # (or rows of an old, wider frame cut off without their right border).
        return all(len(r) == width and r[-1] in "╮│╯" for r in body) and \
            body[0].startswith("╭─ Workers") and body[-1].startswith("╰")
    return check


@pytest.mark.parametrize("exported", [{}, {"COLUMNS": "180", "LINES": "50"}],
                         ids=["plain-shell", "shell-exporting-COLUMNS-LINES"])
def test_the_frame_fills_the_terminal_and_follows_resizes(tmux_env, exported):
    t = tmux_env(size=(180, 50), **exported)
    run_dashboard(t)
    t.wait(fills(180, 50), 10)
    for width, height in ((120, 40), (220, 60)):
        t.resize(width, height)
        t.wait(fills(width, height), 10)  # a second on an idle machine: see bench/


def test_at_80x24_the_footer_still_shows_collect_help_and_quit(tmux_env):
    t = tmux_env(size=(80, 24))
    run_dashboard(t)
    screen = t.wait(lambda s: fills(80, 24)(s) and s, 10)
    footer = screen.split("\n")[23]
    for key in ("c Collect", "? Help", "q Quit"):
        assert key in footer, footer
    # The keys the footer leaves out still work: a (collect everything) answers.
    t.keys("a")
    t.wait(lambda s: "Nothing to queue" in s or "queued" in s, 10)
    t.resize(160, 48)  # back to full width: the footer lists every key again
    every = ("c Collect", "a All now", "h Health", "p Pause/resume", "? Help", "q Quit")
    t.wait(lambda s: fills(160, 48)(s) and all(k in s.split("\n")[47] for k in every), 10)
    # Not quit_cleanly: tmux 3.3 shows rows of an alternate screen that grew on the restored
    # shell screen (any full-screen program does it), so only the exit status is checked.
    t.keys("q")
    t.wait(lambda s: s.rstrip().endswith(PROMPT.strip()), 10)
    t.keys("echo exit-$?-clean", "Enter")
    t.wait(lambda s: "exit-0-clean" in s.split("echo")[-1], 5)


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers: a backend that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_the_first_frame_is_drawn_before_any_backend_answers(tmux_env, silent_server):
    t = tmux_env(REDIS_URL=f"redis://127.0.0.1:{silent_server}/0",
                 DATABASE_URL=f"postgresql://u:p@127.0.0.1:{silent_server}/db")
    t.wait(lambda s: s.rstrip().endswith(PROMPT.strip()), 10)
    t.keys(f"{EXE} --workers 2", "Enter")
    screen = t.wait(lambda s: fills(160, 48)(s) and s, 10)
    rows = screen.split("\n")
    assert "connecting…" in rows[0], rows[0]  # the header: no backend has answered
    assert re.search(r"╭─ Queue ─+╮", screen) and "│ connecting…" in screen
    assert re.search(r"connecting… ─╯", screen)  # the history's subtitle
    for key in ("c Collect", "? Help", "q Quit"):
        assert key in rows[47]
    shell = t.flag("pane_pid")
    (dashboard,) = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
    os.kill(int(dashboard), signal.SIGKILL)  # its backends never answer: nothing to wait for


def test_beside_a_headless_process_the_dashboard_watches_and_the_headless_collects(
        tmux_env, fake_vultr, tmp_path):
    from procs import Consumer, worker_env

    from optiinfra_tui.storage import history
    from optiinfra_tui.storage.history import CollectionRun
    from optiinfra_tui.worker.owner import embedded_owner

    home = tmp_path / "home"  # the tmux session's OPTIINFRA_HOME too
    (tmp_path / "none.toml").write_text("schedules = []\n")
    env = dict(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
               OPTIINFRA_CONFIG=str(tmp_path / "none.toml"), PROVIDER_CHECK_INTERVAL="0")
    headless = Consumer("headless", worker_env(os.environ, **env), home).start()
    try:
        owner = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (owner and owner.pid == headless.pid):
            owner = embedded_owner(home)
            time.sleep(0.1)
        assert owner and owner.pid == headless.pid, headless.printed()
        t = tmux_env(**env)
        run_dashboard(t)
        t.wait(lambda s: f"watching: workers in pid {headless.pid} on {owner.host} (headless)"
               in s, 10)
        shell = t.flag("pane_pid")
        (dashboard,) = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()

        t.keys("c")
        t.wait(lambda s: "Start a collection" in s, 5)
        t.keys("Enter")
        rows = fake_vultr.line_count()
        line = re.compile(rf"│\s+1\s+success\s+vultr\s+default_customer\s+cost\s+manual\s+1/\d+"
                          rf"\s+{rows:,}\s")
        t.wait(line.search, 30)
        # The dashboard ran nothing and never loaded chDB; the headless process ran the run.
        assert "chdb" not in Path(f"/proc/{dashboard}/maps").read_text()
        history.connect(f"sqlite:///{home / 'history.db'}")
        done = list(CollectionRun.select())
        assert [(r.status, r.worker.rsplit(":", 1)[0]) for r in done] == [
            ("success", f"{owner.host}:{headless.pid}")]
        quit_cleanly(t)
    finally:
        headless.stop()
    assert headless.proc.returncode == 0, headless.printed()
    assert "failed" not in headless.printed()
