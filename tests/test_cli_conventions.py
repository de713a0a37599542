"""The command follows click's conventions: help that tells exit codes, variables and completion,
help on every option, the platform's config dir, a progress line only on a terminal, and
logs on stderr (never in the workers' log file)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import click
import pytest

from optiinfra_tui.cli import cli

MODULE = [sys.executable, "-m", "optiinfra_tui"]


@pytest.fixture
def env(tmp_path):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("VULTR_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL",
                                 "OPTIINFRA_", "XDG_"))}
    (tmp_path / "no-schedules.toml").write_text("schedules = []\n")
    base.update(OPTIINFRA_HOME=str(tmp_path / "home"), RETRY_DELAY="0.05",
                OPTIINFRA_CONFIG=str(tmp_path / "no-schedules.toml"), PROVIDER_CHECK_INTERVAL="0")
    return base


def test_help_lists_exit_codes_variables_and_completion(env):
    r = subprocess.run(MODULE + ["--help"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for code in ("Exit codes:", "  2 ", "  3 ", "130"):
        assert code in r.stdout
    for var in ("OPTIINFRA_HOME", "OPTIINFRA_CONFIG", "REDIS_URL", "DATABASE_URL",
                "CLICKHOUSE_URL", "VULTR_API_KEY"):
        assert var in r.stdout
    assert "_OPTIINFRA_TUI_COMPLETE=bash_source optiinfra-tui" in r.stdout


def test_shell_completion_completes_commands(env):
    script = subprocess.run(MODULE, env=dict(env, _OPTIINFRA_TUI_COMPLETE="bash_source"),
                            capture_output=True, text=True, timeout=60)
    assert "complete -o nosort -F _optiinfra_tui_completion optiinfra-tui" in script.stdout
    words = subprocess.run(MODULE, env=dict(env, _OPTIINFRA_TUI_COMPLETE="bash_complete",
                                            COMP_WORDS="optiinfra-tui co", COMP_CWORD="1"),
                           capture_output=True, text=True, timeout=60)
    assert set(words.stdout.split()) >= {"plain,collect", "plain,costs"}


def _commands(group: click.Group):
    yield group
    for command in group.commands.values():
        yield from _commands(command) if isinstance(command, click.Group) else [command]


def test_every_option_has_help_text():
    missing = [f"{command.name} {param.opts[0]}" for command in _commands(cli)
               for param in command.params
               if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert not missing, f"options without help: {missing}"


def test_config_file_is_found_in_the_platform_config_dir(tmp_path, env):
    config_home = tmp_path / "xdg"
    (config_home / "optiinfra").mkdir(parents=True)
    (config_home / "optiinfra" / "config.toml").write_text(
        'schedules = []\n[customers.acme]\nvultr_api_key_env = "ACME_VULTR_KEY"\n')
    del env["OPTIINFRA_CONFIG"]
    probe = ("from optiinfra_tui.settings import load_settings; s = load_settings(); "
             "print(s.config_path); print(sorted(c.id for c in s.customers))")
    for extra in ({"XDG_CONFIG_HOME": str(config_home)},
                  {"HOME": str(tmp_path / "user")}):
        if "HOME" in extra:  # ~/.config/optiinfra/config.toml with XDG_CONFIG_HOME unset
            (tmp_path / "user" / ".config").mkdir(parents=True)
            (tmp_path / "user" / ".config" / "optiinfra").symlink_to(config_home / "optiinfra")
        r = subprocess.run([sys.executable, "-c", probe], env=dict(env, **extra),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "config.toml" in r.stdout and "acme" in r.stdout, r.stdout


def test_without_a_config_file_anywhere_settings_come_from_the_environment(tmp_path, env):
    del env["OPTIINFRA_CONFIG"]
    r = subprocess.run([sys.executable, "-c", "from optiinfra_tui.settings import "
                        "load_settings; print(load_settings().config_path)"],
                       env=dict(env, XDG_CONFIG_HOME=str(tmp_path / "empty")),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stderr


def _vultr_env(env, fake_vultr):
    return dict(env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)


def test_inline_collect_shows_no_progress_when_piped(env, fake_vultr):
    r = subprocess.run(MODULE + ["collect", "vultr", "--types", "cost", "--inline"],
                       env=_vultr_env(env, fake_vultr), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr + r.stdout and " rows, " not in r.stderr


def test_inline_collect_shows_progress_on_a_terminal(env, fake_vultr):
    leader, follower = pty.openpty()
    proc = subprocess.Popen(MODULE + ["collect", "vultr", "--types", "cost", "--inline"],
                            env=_vultr_env(env, fake_vultr), stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 180)
            if not ready:
                break
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    assert "\r  " in text and " rows, " in text and " page" in text, text
    assert "success" in text


def test_commands_log_to_stderr_never_to_the_workers_log_file(env, fake_vultr):
    fake_vultr.fail_503(times=8)  # past the client's own retries: the run retries, and logs it
    r = subprocess.run(MODULE + ["collect", "vultr", "--types", "cost", "--inline"],
                       env=_vultr_env(env, fake_vultr), capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert "WARNING optiinfra.collection: run 1: attempt 1/" in r.stderr
    assert fake_vultr.token not in r.stderr
    assert not (Path(env["OPTIINFRA_HOME"]) / "optiinfra.log").exists()
