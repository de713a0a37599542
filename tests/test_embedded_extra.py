"""chDB is the `embedded` extra: without it, commands that need the metrics store say what to do.

chDB stays installed in the test environment; each process here hides it from imports with a
meta-path finder, as if `pip install optiinfra-tui` had been run without the extra.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from procs import cli_without
from services import free_port

from optiinfra_tui.storage.embedded import embedded_missing

FIX = ('pip install "optiinfra-tui[embedded]"', "CLICKHOUSE_URL")


@pytest.fixture
def env(tmp_path):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("VULTR_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL", "OPTIINFRA_"))}
    (tmp_path / "no-schedules.toml").write_text("schedules = []\n")
    return dict(base, OPTIINFRA_HOME=str(tmp_path / "home"),
                OPTIINFRA_CONFIG=str(tmp_path / "no-schedules.toml"))


def without_chdb(args: list[str], env: dict) -> subprocess.CompletedProcess:
    r = subprocess.run([*cli_without("chdb"), *args], env=env,
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


def test_the_check_names_both_fixes_only_when_chdb_is_the_store_and_missing():
    assert embedded_missing("chdb:///tmp/x") is None  # installed here
    message = embedded_missing("chdb:///tmp/x", module="chdb_not_installed_here")
    assert all(fix in message for fix in FIX)
    assert embedded_missing("http://ch:8123/db", module="chdb_not_installed_here") is None


@pytest.mark.parametrize("args", [["costs"], ["--headless", "--workers", "1"],
                                  ["collect", "vultr", "--inline"]])
def test_commands_that_need_the_store_exit_2_with_the_fix(env, args):
    r = without_chdb(args, dict(env, VULTR_API_KEY="k"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert all(fix in r.stderr for fix in FIX), r.stderr
    assert "chDB" in r.stderr and "not installed" in r.stderr


def test_without_chdb_history_works_and_status_names_the_metrics_problem(env):
    without_chdb(["collect", "vultr", "--inline"], dict(env, VULTR_API_KEY="k"))
    r = without_chdb(["history", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []  # the refused inline collection left no failed run
    r = without_chdb(["status"], env)
    assert r.returncode == 1  # a backend is down
    metrics = [line for line in r.stdout.splitlines() if line.split()[:1] == ["metrics"]]
    assert len(metrics) == 1 and "DOWN" in metrics[0], r.stdout
    assert all(fix in metrics[0] for fix in FIX)
    doc = json.loads(without_chdb(["status", "--json"], env).stdout)
    assert [h["ok"] for h in doc["health"] if h["name"] == "metrics"] == [False]


def test_a_clickhouse_server_needs_no_chdb(env):
    # Nothing listens there: the server is tried and found unreachable, not refused for chDB.
    url = f"http://default:secret@127.0.0.1:{free_port()}/optiinfra"
    r = without_chdb(["costs"], dict(env, CLICKHOUSE_URL=url))
    assert r.returncode != 2 and "unreachable" in r.stderr, r.stderr
    assert "embedded" not in r.stderr and "secret" not in r.stderr
