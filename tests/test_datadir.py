"""The data dir is private: a fresh one is 0700 with every file in it 0600 (chDB's store
included) after a real run, and an existing one open to other users gets a warning naming
the command that fixes it."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

from procs import CLI
from test_tui_tmux import quit_cleanly, run_dashboard, tmux_env  # noqa: F401 (a fixture)


def modes(home: Path) -> dict[str, int]:
    """Every path under `home` (itself included), relative, with its permission bits."""
    found = {".": stat.S_IMODE(home.lstat().st_mode)}
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(root, name)
            found[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_a_fresh_data_dir_and_every_file_in_it_are_the_users_alone(tmux_env, fake_vultr,  # noqa: F811
                                                                   tmp_path):
    # The real program in a real terminal: the dashboard creates the data dir, collects
    # (history, queue, chDB, the owner lock, the log), then quits.
    t = tmux_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    home = tmp_path / "home"  # tmux_env's OPTIINFRA_HOME
    assert not home.exists()
    run_dashboard(t)
    t.keys("c")
    t.wait(lambda s: "Start a collection" in s, 5)
    t.keys("Enter")
    t.wait(lambda s: re.search(r"│\s+1\s+success\s", s), 30)
    quit_cleanly(t)

    found = modes(home)
    for name in ("history.db", "queue.db", "optiinfra.log", "owner.lock", "clickhouse"):
        assert name in found, sorted(found)
    chdb = [p for p in found if p.startswith("clickhouse/")]
    assert len(chdb) > 50  # the store's own files, each checked below
    dirs = {p for p in found if (home / p).is_dir() and not (home / p).is_symlink()}
    wrong = {p: f"{m:04o}" for p, m in found.items()
             if not (home / p).is_symlink() and m != (0o700 if p in dirs else 0o600)}
    assert wrong == {}, wrong


def cli(args: list[str], home: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    config = tmp_path / "no-schedules.toml"
    config.write_text("schedules = []\n")
    env = {"PATH": os.environ["PATH"], "OPTIINFRA_HOME": str(home),
           "OPTIINFRA_CONFIG": str(config), "PROVIDER_CHECK_INTERVAL": "0"}
    return subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=60)


def test_a_data_dir_others_can_read_gets_a_warning_naming_the_fix(tmp_path):
    home = tmp_path / "data dir"
    home.mkdir(mode=0o755)
    first = cli(["history"], home, tmp_path)
    assert first.returncode == 0, first.stderr
    (line,) = [x for x in first.stderr.splitlines() if "data dir" in x]
    assert f"{home} is 0755" in line
    assert line.endswith(f"Fix it with: chmod -R go-rwx '{home}'")
    # Files made by that run are private even there; the dir keeps its mode until fixed.
    assert stat.S_IMODE((home / "history.db").stat().st_mode) == 0o600

    subprocess.run(["chmod", "-R", "go-rwx", str(home)], check=True)  # the command, as given
    again = cli(["history"], home, tmp_path)
    assert again.returncode == 0 and "data dir" not in again.stderr, again.stderr


def test_a_file_others_can_read_is_named_too(tmp_path):
    home = tmp_path / "home"
    assert cli(["history"], home, tmp_path).stderr == ""  # made private: nothing to say
    os.chmod(home / "history.db", 0o644)
    warned = cli(["history"], home, tmp_path).stderr
    assert f"{home / 'history.db'} is 0644" in warned and "chmod -R go-rwx" in warned


def test_a_shared_directory_as_data_dir_is_not_chmodded_but_replaced(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: a recursive chmod would lock its other users out
    warned = cli(["history"], shared, tmp_path).stderr
    assert "Set OPTIINFRA_HOME to a directory of its own" in warned
    assert "chmod" not in warned
