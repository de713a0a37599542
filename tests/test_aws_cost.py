"""AWS Cost Explorer end to end: moto's server answers (through a recording proxy), runs go
through the real task path (collection.execute_run on a Runtime), rows land in real chDB."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from aws_fixtures import (
    FEB,
    MAR,
    TODAY,
    by_day,
    by_day_and_service,
    collect,
    live_rows,
    reported_by_day,
    stored,
)
from aws_truth import ce_pages, seeded_truth
from services import wait_until

from optiinfra_tui.collectors import get_collector
from optiinfra_tui.collectors.aws import AwsAccount, RequestBudgetExceeded
from optiinfra_tui.collectors.aws.collector import AwsCollector
from optiinfra_tui.collectors.aws.cost_explorer import (
    charge_category,
    parse_result,
    window_for,
)
from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.rows import COST_EXPLORER, COST_LINES
from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage import history
from optiinfra_tui.worker import actions, runs
from optiinfra_tui.worker.pool import WorkerPool
from optiinfra_tui.worker.runs import RunRow

# --- pure logic -------------------------------------------------------------------------------


def test_record_types_map_to_focus_charge_categories():
    assert {t: charge_category(t) for t in (
        "Usage", "DiscountedUsage", "Savings Plan Covered Usage", "Credit", "Refund", "Tax",
        "Recurring reservation fee", "Upfront reservation fee", "RIFee", "Fee",
        "SavingsPlanUpfrontFee", "Savings Plan Negation", "Enterprise Discount Program Discount",
    )} == {
        "Usage": "Usage", "DiscountedUsage": "Usage", "Savings Plan Covered Usage": "Usage",
        "Credit": "Credit", "Refund": "Credit", "Tax": "Tax",
        "Recurring reservation fee": "Purchase", "Upfront reservation fee": "Purchase",
        "RIFee": "Purchase", "Fee": "Purchase", "SavingsPlanUpfrontFee": "Purchase",
        "Savings Plan Negation": "Adjustment",
        "Enterprise Discount Program Discount": "Adjustment",
    }


def test_window_is_the_previous_month_to_tomorrow_unless_that_month_closed():
    assert window_for(TODAY, {}) == (FEB, date(2026, 3, 11), (FEB, MAR))
    assert window_for(TODAY, {"ce:closed:2026-02": "final"}) == (MAR, date(2026, 3, 11),
                                                                  (MAR,))
    # The first of January: December of the year before, whole.
    assert window_for(date(2026, 1, 1), {}) == (date(2025, 12, 1), date(2026, 1, 2),
                                                (date(2025, 12, 1), date(2026, 1, 1)))


def test_amounts_stay_exact_decimals_and_line_ids_are_deterministic():
    ctx = CollectContext("c1", 1, datetime(2026, 3, 10))
    result = {"TimePeriod": {"Start": "2026-03-01", "End": "2026-03-02"}, "Estimated": True,
              "Groups": [{"Keys": ["AWS Lambda", "Usage"], "Metrics": {
                  "UnblendedCost": {"Amount": "0.0101516483", "Unit": "USD"},
                  "AmortizedCost": {"Amount": "1E-10", "Unit": "USD"}}}]}
    day, estimated, (row,) = parse_result(result, ctx)
    assert (day, estimated) == (MAR, True)
    assert row.billed_cost == Decimal("0.0101516483") and row.effective_cost == Decimal("1E-10")
    assert row.line_id == "ce:2026-03-01:AWS Lambda:Usage:USD" == parse_result(
        result, ctx)[2][0].line_id
    assert (row.source, row.is_estimate, row.billing_period) == (COST_EXPLORER, True, MAR)


# --- through the task path --------------------------------------------------------------------


def test_totals_equal_the_seeded_truth_across_pages_and_a_second_run_changes_nothing(
        runtime, aws, clock):
    truth = seeded_truth(FEB, 37)  # Feb 1 .. Mar 9
    # Feb's last day still estimated: Feb isn't closed, so the second run asks the same.
    pages = ce_pages(truth, estimated={date(2026, 2, 28)} | {MAR + timedelta(days=d)
                                                               for d in range(9)},
                     groups_per_page=60)
    assert len(pages) >= 5
    aws.inject_ce(pages)
    rt = runtime()

    done = collect(rt)
    assert done.status == "success", done.error_message
    assert done.metrics_collected == len(truth)
    assert done.requests == len(pages)
    assert aws.proxy.periods() == [("2026-02-01", "2026-03-11")] * len(pages)
    expected = by_day_and_service(truth)
    assert stored(rt) == expected  # per day, service and currency, to the last decimal
    assert reported_by_day(rt) == by_day(truth)
    rows = live_rows(rt)
    assert len(rows) == len(truth)
    assert {r.is_estimate for r in rows if r.billing_period == MAR} == {True}

    again = collect(rt)
    assert again.status == "success" and again.requests == len(pages)
    assert stored(rt) == expected
    assert reported_by_day(rt) == by_day(truth)
    assert len(live_rows(rt)) == len(truth)


def test_an_estimated_month_replaced_by_its_final_answer_leaves_only_the_final_figures(
        runtime, aws, clock):
    march = {MAR + timedelta(days=d) for d in range(9)}
    estimate = seeded_truth(FEB, 37)
    aws.inject_ce(ce_pages(estimate, estimated=set(
        FEB + timedelta(days=d) for d in range(28)) | march, tag="a"))
    rt = runtime()
    assert collect(rt).status == "success"
    assert stored(rt) == by_day_and_service(estimate)

    final = dict(estimate)
    feb_keys = sorted(k for k in final if k[0].month == 2)
    vanished, changed = feb_keys[3], feb_keys[10]
    del final[vanished]
    final[changed] = (final[changed][0] + Decimal("1.250001"), final[changed][1])
    aws.inject_ce(ce_pages(final, estimated=march, tag="b"))
    clock[0] = TODAY + timedelta(days=1)  # a new day: a new request, the final answer
    done = collect(rt)
    assert done.status == "success", done.error_message

    assert stored(rt) == by_day_and_service(final)
    feb_rows = [r for r in live_rows(rt) if r.billing_period == FEB]
    assert feb_rows and not any(r.is_estimate for r in feb_rows)
    assert len(feb_rows) == len(feb_keys) - 1
    gone = f"ce:{vanished[0]}:{vanished[1]}:{vanished[2]}:{vanished[3]}"
    assert gone not in {r.line_id for r in live_rows(rt)}
    usd = {t.currency: t for t in rt.metrics().costs(
        by="customer", customer_id=rt.settings.default_customer_id)}["USD"]
    assert usd.billed_cost == sum(v[0] for k, v in final.items() if k[0].month == 2
                                  and k[3] == "USD")
    assert usd.estimated_cost == sum(v[0] for k, v in final.items() if k[0].month == 3)

    # February is final: the next run doesn't read it again, and leaves it as it is.
    aws.inject_ce(ce_pages({k: v for k, v in final.items() if k[0] >= MAR},
                           estimated=march, tag="c"))
    clock[0] = TODAY + timedelta(days=2)
    assert collect(rt).status == "success"
    assert aws.proxy.periods()[-1] == ("2026-03-01", "2026-03-13")
    assert stored(rt) == by_day_and_service(final)


def test_throttling_is_retried_and_succeeds(runtime, aws, clock):
    truth = seeded_truth(FEB, 20)
    pages = ce_pages(truth, groups_per_page=100)
    aws.inject_ce(pages)
    # botocore tries each request 3 times: the first attempt of the run gives up, the second
    # is throttled once more and then goes through.
    aws.proxy.throttle = 4
    rt = runtime()
    done = collect(rt)
    assert done.status == "success", done.error_message
    tries = runs.attempts(done.id)
    assert [t.status for t in tries] == ["retrying", "success"]
    assert tries[0].error_kind == "transient" and "ThrottlingException" in tries[0].error_message
    assert done.requests == 4 + len(pages)
    assert stored(rt) == by_day_and_service(truth)


def test_a_denied_key_fails_at_once_naming_the_permission(runtime, aws, clock):
    aws.inject_ce(ce_pages(seeded_truth(FEB, 3)))
    aws.proxy.deny = {aws.key_id}
    rt = runtime()
    done = collect(rt)
    assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "auth")
    assert "ce:GetCostAndUsage" in done.error_message
    assert "AWS_ACCESS_KEY_ID" in done.error_message
    assert aws.secret not in done.error_message
    assert done.requests == 1  # an auth error is not retried by botocore either
    assert live_rows(rt) == []


def test_the_budget_stops_a_run_that_would_exceed_it(runtime, aws, clock):
    truth = seeded_truth(FEB, 20)
    pages = ce_pages(truth, groups_per_page=50)
    assert len(pages) == 5
    aws.inject_ce(pages)
    rt = runtime(AWS_CE_MAX_REQUESTS="3")
    done = collect(rt)
    assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "budget")
    assert "AWS_CE_MAX_REQUESTS" in done.error_message and "3 requests" in done.error_message
    assert done.requests == 3 and len(aws.proxy.periods()) == 3
    assert RunRow.of(runs.get_run(done.id)).to_json()["requests"] == 3
    # The pages read are kept; the window isn't replaced from a partial answer.
    assert len(live_rows(rt)) == 150


def test_a_new_account_without_data_is_an_empty_result_not_a_failure(runtime, aws, clock):
    truth = seeded_truth(FEB, 3)
    aws.inject_ce(ce_pages(truth))
    rt = runtime()
    assert collect(rt).status == "success"
    aws.proxy.unavailable = 1
    clock[0] = TODAY + timedelta(days=1)
    done = collect(rt)
    assert (done.status, done.metrics_collected, done.requests) == ("success", 0, 1)
    assert stored(rt) == by_day_and_service(truth)  # nothing replaced by a non-answer


def test_no_secret_in_logs_history_or_queue(runtime, aws, clock, tmp_path):
    from optiinfra_tui.logs import setup_logging

    aws.inject_ce(ce_pages(seeded_truth(FEB, 5)))
    rt = runtime()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging(rt.settings, level=logging.DEBUG)
    pool = WorkerPool(rt, workers=1, kind="test")
    pool.start()
    try:
        ok = actions.collect(rt, "aws")
        assert wait_until(lambda: runs.get_run(ok.id).is_final, 60)
        aws.proxy.deny = {aws.key_id}
        clock[0] = TODAY + timedelta(days=1)
        denied = actions.collect(rt, "aws")
        assert wait_until(lambda: runs.get_run(denied.id).is_final, 60)
    finally:
        pool.stop(timeout=10)
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
    assert runs.get_run(ok.id).status == "success"
    assert runs.get_run(denied.id).error_kind == "auth"
    home = rt.settings.home
    for path in [rt.settings.log_path, *home.glob("*.db*")]:
        data = path.read_bytes()
        assert aws.secret.encode() not in data, path
        if path.name.startswith("history") or path.name.startswith("queue"):
            assert aws.key_id.encode() not in data, path
    assert rt.settings.log_path.stat().st_size > 0
    assert "Traceback" not in rt.settings.log_path.read_text()


def test_named_key_variables_and_an_assumed_role(runtime, aws, clock):
    truth = seeded_truth(FEB, 2)
    aws.inject_ce(ce_pages(truth))
    rt = runtime(ACME_AWS_ACCESS_KEY_ID="AKIAACMEACME0001", ACME_AWS_SECRET="acme-secret-1234")
    account = AwsAccount(access_key_id_env="ACME_AWS_ACCESS_KEY_ID",
                         secret_access_key_env="ACME_AWS_SECRET",
                         role_arn="arn:aws:iam::123456789012:role/optiinfra-read")
    customer = rt.settings.default_customer_id
    collector = AwsCollector(rt.settings, customer, account)
    try:
        ctx = CollectContext(customer, 1, datetime.now(UTC).replace(tzinfo=None))
        rows = [r for b in collector.collect("cost", ctx) for r in b.rows if b.table == COST_LINES]
    finally:
        collector.close()
    assert len(rows) == len(truth)
    used = {r.key_id for r in aws.proxy.requests}
    # Signed with the role's temporary key, neither the named key nor the default one.
    assert len(used) == 1 and used.pop().startswith("ASIA")
    assert collector.requests == 2  # sts:AssumeRole, then the one page

    missing = AwsAccount(access_key_id_env="NOPE_KEY", secret_access_key_env="NOPE_SECRET")
    with pytest.raises(ConfigError, match="NOPE_KEY and NOPE_SECRET are not set"):
        AwsCollector(rt.settings, customer, missing)


def test_collecting_aws_without_botocore_names_the_install_command(make_env, tmp_path):
    code = (
        "import sys; sys.modules['botocore'] = None\n"
        "from optiinfra_tui.settings import load_settings\n"
        "from optiinfra_tui.collectors import get_collector\n"
        "from optiinfra_tui.errors import ConfigError\n"
        "s = load_settings()\n"
        "try:\n"
        "    get_collector('aws', s, s.default_customer_id)\n"
        "except ConfigError as exc:\n"
        "    print('ConfigError:', exc)\n")
    r = subprocess.run([sys.executable, "-c", code], env=make_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'ConfigError: ' in r.stdout and 'pip install "optiinfra-tui[aws]"' in r.stdout


def test_budget_error_kind_is_its_own():
    assert RequestBudgetExceeded("x").kind == "budget"


def test_get_collector_builds_the_aws_collector(make_env, aws):
    settings = load_settings(make_env(**aws.env))
    collector = get_collector("aws", settings, settings.default_customer_id)
    try:
        assert isinstance(collector, AwsCollector)
        assert collector.ping() >= 0  # STS GetCallerIdentity: costs nothing
        assert collector.requests == 1
    finally:
        collector.close()


def test_cli_collects_aws_and_history_json_shows_the_requests(make_env, aws):
    truth = seeded_truth(FEB, 4)
    pages = ce_pages(truth, groups_per_page=20)
    aws.inject_ce(pages)
    env = make_env(**aws.env, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    cli = [sys.executable, "-m", "optiinfra_tui.cli"]
    r = subprocess.run(cli + ["collect", "aws", "--inline", "--json"], env=env,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "success"
    h = subprocess.run(cli + ["history", "--json"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert h.returncode == 0, h.stderr
    (run,) = json.loads(h.stdout)
    assert (run["provider"], run["rows"], run["requests"]) == ("aws", len(truth), len(pages))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_history_migration_adds_the_requests_column(backend, tmp_path, request):
    url = (f"sqlite:///{tmp_path / 'h.db'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    database = history.connect(url)
    database.execute_sql("ALTER TABLE collection_runs DROP COLUMN requests")
    database.execute_sql("UPDATE schema_version SET version = 1")
    assert "requests" not in {c.name for c in database.get_columns("collection_runs")}
    assert history.migrate(database) == history.SCHEMA_VERSION >= 2
    assert "requests" in {c.name for c in database.get_columns("collection_runs")}
    # On PostgreSQL the run is inserted without naming the column: its default fills it.
    run = runs.create_run("c", "aws", ["cost"], "cli", max_attempts=1)
    assert runs.get_run(run.id).requests == 0
    runs.add_requests(run.id, 3)
    runs.add_requests(run.id, 2)
    assert runs.get_run(run.id).requests == 5
