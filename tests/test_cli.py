"""The CLI as a user runs it: subprocesses against a real Vultr-shaped server, real chDB."""

import json
import os
import re
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from services import wait_until

CLI = [sys.executable, "-m", "optiinfra_tui.cli"]


@pytest.fixture
def cli_env(tmp_path):
    """Each CLI test its own data dir, so every process has its own chDB path."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("VULTR_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL", "OPTIINFRA_"))}
    # No schedules: a slot falling due mid-test would collect before the test's own run.
    (tmp_path / "no-schedules.toml").write_text("schedules = []\n")
    # Nor timed provider checks: each is an API request the test didn't make.
    base.update(OPTIINFRA_HOME=str(tmp_path / "home"), RETRY_DELAY="0.05",
                OPTIINFRA_CONFIG=str(tmp_path / "no-schedules.toml"), PROVIDER_CHECK_INTERVAL="0")
    return base


def run(args, env, timeout=120, check_clean=True):
    r = subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=timeout)
    if check_clean:
        assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


def test_collect_inline_then_costs_equal_the_server_to_the_cent(cli_env, fake_vultr):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    r = run(["collect", "vultr", "--types", "cost", "--inline", "--json"], env)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["status"] == "success" and first["rows"] == fake_vultr.line_count()

    def totals():
        c = run(["costs", "--by", "provider", "--json"], env)
        assert c.returncode == 0, c.stderr
        doc = json.loads(c.stdout)
        assert [d["key"] for d in doc] == ["vultr"]
        assert isinstance(doc[0]["total"], str)  # decimal strings, never floats
        return Decimal(doc[0]["total"]), doc[0]["rows"]

    total, rows = totals()
    assert total == fake_vultr.total_cost() and rows == fake_vultr.line_count()

    r = run(["collect", "vultr", "--types", "cost", "--inline", "--json"], env)
    assert r.returncode == 0
    assert totals() == (total, rows)

    by_day = json.loads(run(["costs", "--by", "day", "--json"], env).stdout)
    assert sum(Decimal(d["total"]) for d in by_day) == total
    assert fake_vultr.token not in r.stdout + r.stderr
    hist = json.loads(run(["history", "--json"], env).stdout)
    assert [h["status"] for h in hist] == ["success", "success"]
    assert fake_vultr.token not in json.dumps(hist)


def test_costs_spread_per_day_show_totals_and_json_is_rfc3339_with_normalised_amounts(
        cli_env, fake_vultr):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    collected = json.loads(run(["collect", "vultr", "--types", "cost", "--inline", "--json"],
                               env).stdout)
    total = fake_vultr.total_cost()

    # Timestamps: RFC 3339 in UTC, with a Z, in collect, history and status.
    hist = json.loads(run(["history", "--json"], env).stdout)
    stamps = [collected["queued_at"], collected["finished_at"], hist[0]["queued_at"],
              hist[0]["started_at"], json.loads(run(["status", "--json"], env).stdout)["taken_at"]]
    for stamp in stamps:
        assert stamp.endswith("Z") and datetime.fromisoformat(stamp).utcoffset() == timedelta(0)

    # Amounts: cents, as Vultr bills them, not the column's six places.
    by_day = json.loads(run(["costs", "--by", "day", "--json"], env).stdout)
    for row in by_day:
        assert row["currency"] == "USD"
        for field in ("billed_cost", "estimated_cost", "total"):
            assert re.fullmatch(r"-?\d+\.\d\d", row[field]), row
    # Five monthly invoices and a month's estimate, spread over their days: a row per day.
    days = [date.fromisoformat(row["key"]) for row in by_day]
    assert len(days) >= 5 * 28 and days == sorted(set(days))
    assert sum(Decimal(row["total"]) for row in by_day) == total

    text = run(["costs"], env).stdout
    (total_line,) = [line for line in text.splitlines() if line.startswith("TOTAL")]
    billed, estimated, both = (Decimal(v.replace(",", "")) for v in total_line.split()[2:5])
    assert (billed, estimated, both) == (fake_vultr.total_cost(include_pending=False),
                                         total - fake_vultr.total_cost(include_pending=False),
                                         total)
    (mtd_line,) = [line for line in text.splitlines() if line.startswith("Month to date")]
    # The month to date: this month's days so far of the estimate spread over the month.
    month = date.fromisoformat(mtd_line.split("(")[1].split()[0])
    mtd = Decimal(mtd_line.rsplit("$", 1)[1].replace(",", ""))
    assert 0 < mtd <= sum(Decimal(row["total"]) for row in by_day
                          if date.fromisoformat(row["key"]) >= month)
    assert "ESTIMATED: pending charges of months not invoiced yet" in text


def test_missing_key_fails_at_once(cli_env):
    env = dict(cli_env, VULTR_API_URL="http://127.0.0.1:9/v2")
    r = run(["collect", "vultr", "--inline", "--json"], env)
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert (doc["status"], doc["attempt"], doc["error_kind"]) == ("failed", 1, "config")
    assert "VULTR_API_KEY" in doc["error_message"]
    # `history` says no attempt follows (1/1, not 1/4) and what the error is, in words.
    header, line = run(["history"], env).stdout.splitlines()
    cells = dict(zip(header.split()[:9], line.split()[:9], strict=True))
    assert cells["TRY"] == "1/1" and cells["STATUS"] == "failed"
    assert line.split("  ")[-1].startswith("config: VULTR_API_KEY is not set")


def test_unreachable_api_url_names_its_host_and_variable_with_one_count(cli_env):
    from services import free_port

    port = free_port()
    env = dict(cli_env, VULTR_API_KEY="k-0123456789", MAX_RETRIES="1",
               VULTR_API_URL=f"http://127.0.0.1:{port}/v2")
    r = run(["collect", "vultr", "--inline"], env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "attempt 2/2" in r.stdout
    message = r.stdout.split("transient: ", 1)[1].strip()
    assert message.startswith(f"Vultr GET /billing/invoices: can't connect to 127.0.0.1:{port}, "
                              f"from VULTR_API_URL=http://127.0.0.1:{port}/v2 (ConnectError")
    assert "Check that VULTR_API_URL points at a running Vultr API" in message
    assert message.endswith("Gave up after 2 attempts (MAX_RETRIES=1).")
    assert message.count("attempt") == 1  # one count: the run's attempts, as in `attempt 2/2`
    assert "k-0123456789" not in r.stdout + r.stderr


def test_wrong_key_is_an_auth_error(cli_env, fake_vultr):
    env = dict(cli_env, VULTR_API_KEY="not-the-key-42", VULTR_API_URL=fake_vultr.url)
    r = run(["collect", "vultr", "--inline"], env)
    assert r.returncode == 1
    # Final at once: the attempts it made, not a budget it will never use.
    assert "auth" in r.stdout and "attempt 1/1" in r.stdout and "1/4" not in r.stdout
    assert "not-the-key-42" not in r.stdout + r.stderr
    assert fake_vultr.count() == 1


@pytest.mark.parametrize("fake_vultr", [{"invoices": 60, "items": 3}], indirect=True)
def test_429_storm_succeeds_within_30_requests_per_second(cli_env, fake_vultr):
    fake_vultr.rate_limit_every = 4
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    r = run(["collect", "vultr", "--inline", "--json"], env, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["status"] == "success"
    assert fake_vultr.count() > 60
    assert fake_vultr.max_in_window(1.0) <= 30


def test_bad_usage_exits_2(cli_env):
    r = run(["collect", "nimbus"], cli_env)
    assert r.returncode == 2 and "Unknown provider" in r.stderr
    r = run(["collect", "vultr", "--types", "gpus"], cli_env)
    assert r.returncode == 2 and "Unknown data type" in r.stderr
    r = run(["collect", "vultr", "--customer", "no/such"], cli_env)
    assert r.returncode == 2
    r = run(["costs", "--by", "planet"], cli_env)
    assert r.returncode == 2


def test_unreachable_redis_records_nothing(cli_env):
    from services import free_port

    port = free_port()
    env = dict(cli_env, REDIS_URL=f"redis://:pw-1234@127.0.0.1:{port}/0")
    r = run(["collect", "vultr"], env, timeout=60)
    assert r.returncode == 3
    assert f"queue is unreachable: Redis at 127.0.0.1:{port}, from REDIS_URL" in r.stderr
    assert "pw-1234" not in r.stderr
    hist = run(["history", "--json"], env)
    assert json.loads(hist.stdout) == []


def headless(env, *extra) -> subprocess.Popen:
    return subprocess.Popen(CLI + ["--headless", "--workers", "2", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_headless(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


def _e2e(env, fake_vultr):
    proc = headless(env)
    try:
        assert wait_until(lambda: "started" in Path(env["OPTIINFRA_HOME"], "optiinfra.log").read_text()
                          if Path(env["OPTIINFRA_HOME"], "optiinfra.log").exists() else False, 60)
        r = run(["collect", "vultr", "--wait", "--json"], env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        assert doc["status"] == "success" and doc["rows"] == fake_vultr.line_count()
        assert doc["worker"].split(":")[1] == str(proc.pid)  # the headless process ran it

        status = run(["status", "--json"], env)
        snap = json.loads(status.stdout)
        assert any(w["pid"] == proc.pid and w["kind"] == "headless" for w in snap["workers"])
    finally:
        code, out = stop_headless(proc)
    assert code == 0, out
    assert "Traceback" not in out and fake_vultr.token not in out
    return out


def test_headless_and_collect_wait_through_the_sqlite_queue(cli_env, fake_vultr):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    out = _e2e(env, fake_vultr)
    assert "headless consumer" in out and "all tasks finished" in out


def test_headless_and_collect_wait_through_redis_and_postgresql(cli_env, fake_vultr, redis_url,
                                                                postgres_url):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
               REDIS_URL=redis_url, DATABASE_URL=postgres_url)
    _e2e(env, fake_vultr)


@pytest.mark.parametrize("fake_vultr", [{"invoices": 40, "items": 3}], indirect=True)
def test_sigterm_finishes_the_task_in_flight(cli_env, fake_vultr):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
               VULTR_MAX_RPS="10")  # ~4 s of requests: long enough to stop mid-collection
    proc = headless(env)
    try:
        r = run(["collect", "vultr"], env)
        assert r.returncode == 0
        assert wait_until(lambda: fake_vultr.count() >= 5, 60)
    finally:
        code, out = stop_headless(proc)
    assert code == 0, out
    hist = json.loads(run(["history", "--json"], env).stdout)
    assert hist[0]["status"] == "success", hist[0]
    assert hist[0]["rows"] == fake_vultr.line_count()


@pytest.mark.parametrize("fake_vultr", [{"invoices": 30, "items": 20}], indirect=True)
def test_ctrl_c_mid_collection_loses_nothing(cli_env, fake_vultr):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
               VULTR_MAX_RPS="5")
    proc = subprocess.Popen(CLI + ["collect", "vultr", "--inline"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_until(lambda: fake_vultr.count() >= 6, 60)
    proc.send_signal(signal.SIGINT)
    sent_at = fake_vultr.count()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in out + err, (
        f"exit {proc.returncode} after {fake_vultr.count()} requests, SIGINT sent after "
        f"{sent_at}:\n{out}\n{err}")
    assert "Interrupted: run 1 marked canceled" in err
    hist = json.loads(run(["history", "--json"], env).stdout)
    assert hist[0]["status"] == "canceled" and hist[0]["error_kind"] == "interrupted"

    r = run(["collect", "vultr", "--inline", "--json"], env, timeout=240)
    assert json.loads(r.stdout)["status"] == "success"
    doc = json.loads(run(["costs", "--json"], env).stdout)
    assert Decimal(doc[0]["total"]) == fake_vultr.total_cost()
    assert doc[0]["rows"] == fake_vultr.line_count()


def test_status_shows_the_next_run_of_monthly_and_yearly_crons(cli_env, tmp_path):
    # Whatever today is, these crons next fire on a 1st at 02:00 and on 1 January at 03:00.
    config = tmp_path / "calendar.toml"
    config.write_text('[[schedules]]\nname = "monthly"\ncron = "0 2 1 * *"\n\n'
                      '[[schedules]]\nname = "yearly"\ncron = "0 3 1 1 *"\n')
    r = run(["status"], dict(cli_env, OPTIINFRA_CONFIG=str(config)))
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  ")}
    assert re.search(r"next \d{4}-\d\d-01 02:00:00 UTC", lines["monthly"]), r.stdout
    assert re.search(r"next \d{4}-01-01 03:00:00 UTC", lines["yearly"]), r.stdout


def test_python_dash_m_runs_the_same_command(cli_env):
    module = [sys.executable, "-m", "optiinfra_tui"]
    r = subprocess.run(module + ["history", "--json"], env=cli_env, capture_output=True,
                       text=True, timeout=60)
    assert (r.returncode, json.loads(r.stdout)) == (0, []), r.stderr
    # The console script's error handling too: a clear message and exit 2, no traceback.
    r = subprocess.run(module + ["history"], env=dict(cli_env, OPTIINFRA_WORKERS="many"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "OPTIINFRA_WORKERS" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(module + ["--help"], env=cli_env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "Usage: optiinfra-tui" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["--headless", "--metrics-port", "9999", "history"],
     "--headless and --metrics-port belong to the dashboard or headless mode "
     "(`optiinfra-tui --headless --metrics-port 9999`), not to `history`"),
    (["--workers", "3", "status"], "--workers belongs to the dashboard or headless mode"),
    (["--keep-days", "5", "collect", "vultr"], "not to `collect`"),
    (["--shutdown-timeout", "5", "costs"], "not to `costs`"),
    (["--log-format", "json", "history"], "not to `history`"),
    (["--metrics-port", "9999"], "--metrics-port only applies with --headless"),
    (["--metrics-host", "0.0.0.0", "--metrics-port", "9999"],
     "--metrics-port and --metrics-host only apply with --headless"),
    (["--log-format", "json", "--workers", "0"], "--log-format only applies with --headless"),
    (["--workers", "0", "--keep-days", "5"],
     "--keep-days only matters when the dashboard runs workers"),
    (["--workers", "0", "--shutdown-timeout", "5"], "--shutdown-timeout only matters"),
])
def test_top_level_options_that_would_be_ignored_are_usage_errors(cli_env, args, message):
    r = run(args, cli_env, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert not Path(cli_env["OPTIINFRA_HOME"]).exists()  # nothing ran, not even `history`


def _started(env) -> bool:
    log = Path(env["OPTIINFRA_HOME"], "optiinfra.log")
    return log.exists() and "headless consumer" in log.read_text()


def test_collect_inline_beside_the_store_owner_says_drop_inline_and_records_nothing(cli_env,
                                                                                     fake_vultr):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    proc = headless(env)
    try:
        assert wait_until(lambda: _started(env), 60)
        r = run(["collect", "vultr", "--inline", "--types", "cost,resource"], env)
        hist = json.loads(run(["history", "--json"], env).stdout)
    finally:
        code, out = stop_headless(proc)
    assert code == 0, out
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"in use by pid {proc.pid} (headless)" in r.stderr
    assert "Drop --inline: `optiinfra-tui collect vultr --types cost,resource --wait`" in r.stderr
    assert "CLICKHOUSE_URL" in r.stderr and "No run was recorded." in r.stderr
    assert hist == [] and fake_vultr.count() == 0


def test_collect_inline_beside_an_owner_that_has_not_opened_chdb_yet_records_nothing(
        cli_env, fake_vultr):
    # A dashboard owns its data dir from start-up, before it opens chDB: an inline run that
    # opened chDB meanwhile would make every run of that dashboard fail.
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from optiinfra_tui.worker.owner import "
         "claim_embedded; claim_embedded(sys.argv[1], 'dashboard'); print('held', flush=True); "
         "time.sleep(120)", env["OPTIINFRA_HOME"]],
        env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run(["collect", "vultr", "--inline"], env)
    finally:
        holder.kill()
        holder.wait(10)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"in use by pid {holder.pid} (dashboard)" in r.stderr
    assert "Drop --inline: `optiinfra-tui collect vultr --wait`" in r.stderr
    assert "No run was recorded." in r.stderr and fake_vultr.count() == 0
    assert json.loads(run(["history", "--json"], env).stdout) == []


def test_collect_with_no_consumer_warns_how_to_start_one_and_still_exits_0(cli_env):
    r = run(["collect", "vultr"], cli_env)
    assert r.returncode == 0 and "queued (run 1)" in r.stdout
    assert "warning: no consumer is running" in r.stderr
    assert f"the same OPTIINFRA_HOME ({Path(cli_env['OPTIINFRA_HOME']).resolve()})" in r.stderr
    assert "`optiinfra-tui --headless`" in r.stderr and "huey_consumer huey_config.huey" in r.stderr
    r = run(["collect", "vultr", "--json"], cli_env)  # the JSON on stdout stays clean
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "queued"
    assert "warning: no consumer is running" in r.stderr


def test_collect_warns_only_while_no_consumer_beats(cli_env, fake_vultr, redis_url, postgres_url):
    env = dict(cli_env, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
               REDIS_URL=redis_url, DATABASE_URL=postgres_url)
    r = run(["collect", "vultr"], env)
    assert r.returncode == 0 and "the same REDIS_URL and DATABASE_URL" in r.stderr
    proc = headless(env)
    try:
        def beating():
            workers = json.loads(run(["status", "--json"], env).stdout)["workers"]
            return any(w["pid"] == proc.pid for w in workers)

        assert wait_until(beating, 60, 0.5)
        r = run(["collect", "vultr", "--wait"], env)
    finally:
        code, out = stop_headless(proc)
    assert code == 0, out
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no consumer" not in r.stderr
