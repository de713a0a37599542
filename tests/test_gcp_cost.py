"""GCP costs from a Cloud Billing export in a real local BigQuery (bqemulator), through the task
path: request_collection, execute_run, chDB. Google's side (token endpoint, TLS, throttling,
denial) is tests/bq_fixtures.py's BigQueryFront; no mocks.

Seeded amounts have at most 3 decimals (the emulator's NUMERIC keeps 3), so the truth computed
here in Decimal is exact and no figure can match only through the emulator's rounding.
"""

from __future__ import annotations

import itertools
import sqlite3
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from bq_fixtures import PROJECT, ExportRow, seeded_rows

from optiinfra_tui.collectors import gcp, get_collector
from optiinfra_tui.errors import ConfigError, DataError
from optiinfra_tui.rows import BIGQUERY_EXPORT, COST_LINES
from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import collection, runs
from optiinfra_tui.worker.collection import request_collection
from optiinfra_tui.worker.runtime import Runtime

# The runs' clock (the tests own it): the re-read "last 3 days" are 2026-11-17 .. 2026-11-20.
NOW = datetime(2026, 11, 20, 12, 0)
DAYS = [date(2026, 10, 1) + timedelta(days=i) for i in range(51)]  # 2026-10-01 .. 2026-11-20


def late_invoice(day: date) -> str:
    """The invoice month: usage of a month's last day is billed in the next one (as happens)."""
    following = day + timedelta(days=1)
    return f"{following:%Y%m}" if following.day == 1 else f"{day:%Y%m}"


@pytest.fixture
def clock(monkeypatch):
    """Each run starts a minute after the one before, from NOW."""
    minutes = itertools.count()
    monkeypatch.setattr(collection, "utcnow", lambda: NOW + timedelta(minutes=next(minutes)))


@pytest.fixture
def seeded(billing_export):
    billing_export.insert(seeded_rows(DAYS, datetime(2026, 11, 20, 6, tzinfo=UTC),
                                      invoice_month=late_invoice))
    return billing_export


def runtime(make_env, **env) -> Runtime:
    rt = Runtime(load_settings(make_env(**env)))
    rt.history()
    return rt


def front_env(front, key, billing_export, **extra) -> dict:
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(key.path),
            "GCP_BILLING_TABLE": billing_export.billing_table, "GCP_JOB_PROJECT": PROJECT,
            "BIGQUERY_API_URL": front.url, "SSL_CERT_FILE": str(front.cert_file), **extra}


def emulator_env(billing_export, **extra) -> dict:
    return {"GCP_BILLING_TABLE": billing_export.billing_table,
            "BIGQUERY_API_URL": billing_export.emulator.url, **extra}


def collect(rt: Runtime):
    run = request_collection(rt, rt.settings.default_customer_id, "gcp", "cost", trigger="cli")
    return collection.run_inline(rt, run.id)


def stored(rt: Runtime) -> list:
    return rt.metrics().read_rows(COST_LINES, customer_id=rt.settings.default_customer_id,
                                  provider="gcp")


def by_day_service_currency(rows) -> dict:
    out: dict = defaultdict(Decimal)
    for r in rows:
        out[(r.charge_period_start.date(), r.service_name, r.billing_currency)] += r.billed_cost
    return dict(out)


def credits_by_currency(rows) -> dict:
    out: dict = defaultdict(Decimal)
    for r in rows:
        if r.charge_category == "Credit":
            out[r.billing_currency] += r.billed_cost
    return dict(out)


def queries(front) -> list[dict]:
    """The bodies of the jobs.query requests BigQuery answered, in order."""
    return [s.body for s in front.seen if s.method == "POST" and s.status == 200
            and s.path.endswith("/queries") and s.body]


def params_of(body: dict) -> dict:
    out = {}
    for p in body["queryParameters"]:
        value = p["parameterValue"]
        out[p["name"]] = ([v["value"] for v in value["arrayValues"]] if "arrayValues" in value
                          else value["value"])
    return out


# --- through Google's front: token, TLS, pages ------------------------------------------------


def test_totals_per_day_service_and_currency_equal_the_export_to_the_cent(
        make_env, seeded, bq_front, tmp_path, clock, monkeypatch):
    monkeypatch.setattr(gcp, "PAGE_ROWS", 40)  # several pages of each query
    key = bq_front.service_account(tmp_path)
    rt = runtime(make_env, **front_env(bq_front, key, seeded))
    try:
        done = collect(rt)
        assert done.status == "success", done.error_message
        assert done.attempt == 1
        rows = stored(rt)
        assert by_day_service_currency(rows) == seeded.by_day_service_currency()
        totals: dict = defaultdict(Decimal)
        for r in rows:
            totals[r.billing_currency] += r.billed_cost
        assert dict(totals) == seeded.total()
        assert set(totals) == {"USD", "EUR"}
        assert done.metrics_collected == len(rows)
        # Credits are rows of their own, and sum to the export's credits.
        assert credits_by_currency(rows) == seeded.credits()
        assert all(r.billed_cost <= 0 for r in rows if r.charge_category == "Credit")
        assert {r.charge_category for r in rows} == {"Usage", "Tax", "Credit"}
        assert {r.source for r in rows} == {BIGQUERY_EXPORT}
        # billing_period is the invoice month: 31 October's usage is invoiced in November.
        oct31 = [r for r in rows if r.charge_period_start.date() == date(2026, 10, 31)]
        assert oct31 and {r.billing_period for r in oct31} == {date(2026, 11, 1)}
        assert {r.billing_period for r in rows
                if r.charge_period_start.date() == date(2026, 10, 30)} == {date(2026, 10, 1)}
        # Every page came: jobs.query's first page, then getQueryResults with page tokens.
        tokens = [s for s in bq_front.seen if s.method == "GET" and "pageToken" in s.query]
        assert len(tokens) >= 5
        assert all(s.status == 200 for s in bq_front.seen)
    finally:
        rt.close()


def test_collecting_twice_changes_nothing_and_rereads_only_the_last_days(
        make_env, seeded, bq_front, tmp_path, clock):
    key = bq_front.service_account(tmp_path)
    rt = runtime(make_env, **front_env(bq_front, key, seeded))
    try:
        assert collect(rt).status == "success"
        first = {r.line_id: r.billed_cost for r in stored(rt)}
        second = collect(rt)
        assert second.status == "success", second.error_message
        assert {r.line_id: r.billed_cost for r in stored(rt)} == first
        assert by_day_service_currency(stored(rt)) == seeded.by_day_service_currency()
        # First run: every invoice month. Second: no month moved, only the last 3 days.
        costs = [params_of(b) for b in queries(bq_front) if "months" in params_of(b)]
        assert [c["months"] for c in costs] == [["202610", "202611"], []]
        assert [c["since"] for c in costs] == ["2026-11-17", "2026-11-17"]
        assert 0 < second.metrics_collected < len(first)
    finally:
        rt.close()


# --- straight at the emulator: no token, no credentials ---------------------------------------


def test_late_rows_a_changed_and_a_vanished_group_leave_exactly_the_new_figures(
        make_env, seeded, clock):
    rt = runtime(make_env, **emulator_env(seeded))
    try:
        assert collect(rt).status == "success"
        before = by_day_service_currency(stored(rt))
        assert before == seeded.by_day_service_currency()

        # October, long closed, gets a late correction: one group vanishes (its rows are
        # re-stated under another SKU) and a late row arrives; its MAX(export_time) moves.
        gone = next(r for r in seeded.rows if r.start.date() == date(2026, 10, 5))
        seeded.delete_where(
            f"DATE(usage_start_time) = '2026-10-05' AND sku.description = '{gone.sku}' "
            f"AND IFNULL(project.id, '') = '{gone.project or ''}'",
            keep=lambda r: not (r.start.date() == date(2026, 10, 5) and r.sku == gone.sku
                                and r.project == gone.project))
        late = datetime(2026, 11, 20, 11, tzinfo=UTC)
        seeded.insert([
            ExportRow(gone.service, "Re-stated usage", gone.project, gone.region, "USD",
                      Decimal("12.345"), gone.start, late, "202610"),
            ExportRow(("95FF-2EF5-5EA1", "Cloud Storage"), "Standard Storage US Multi-region",
                      "shop-prod", "us-east1", "USD", Decimal("0.007"),
                      datetime(2026, 10, 12, 3, tzinfo=UTC), late, "202610",
                      credits=[("Free tier", Decimal("-0.007"), "FREE_TIER")])])
        # Within the last 3 days a group changes without any newer export_time (a deletion):
        # only the re-read of those days can see it.
        changed = next(r for r in seeded.rows if r.start.date() == date(2026, 11, 18))
        seeded.delete_where(
            f"DATE(usage_start_time) = '2026-11-18' AND service.description = "
            f"'{changed.service[1]}'",
            keep=lambda r: not (r.start.date() == date(2026, 11, 18)
                                and r.service == changed.service))

        again = collect(rt)
        assert again.status == "success", again.error_message
        after = by_day_service_currency(stored(rt))
        assert after == seeded.by_day_service_currency()
        assert after != before
        assert (date(2026, 11, 18), changed.service[1], changed.currency) not in after
        assert credits_by_currency(stored(rt)) == seeded.credits()
        # A third run finds nothing new and changes nothing.
        assert collect(rt).status == "success"
        assert by_day_service_currency(stored(rt)) == after
    finally:
        rt.close()


def test_emulator_needs_no_credentials(make_env, seeded, clock):
    rt = runtime(make_env, **emulator_env(seeded, GOOGLE_APPLICATION_CREDENTIALS=""))
    try:
        done = collect(rt)
        assert done.status == "success", done.error_message
        assert by_day_service_currency(stored(rt)) == seeded.by_day_service_currency()
    finally:
        rt.close()


def test_a_customer_names_its_own_export_table_in_its_gcp_table(make_env, seeded, clock,
                                                                 tmp_path):
    cfg = tmp_path / "acme.toml"
    cfg.write_text(f'schedules = []\n[customers.acme.gcp]\nbilling_table = "{seeded.billing_table}"\n'
                   f'job_project = "{PROJECT}"\nservice_account_file_env = "ACME_GCP_KEY"\n')
    # The default customer has no GCP here (no GCP_BILLING_TABLE): acme alone reads the export.
    rt = runtime(make_env, OPTIINFRA_CONFIG=str(cfg), BIGQUERY_API_URL=seeded.emulator.url)
    try:
        assert [c.id for c in rt.settings.customers_with("gcp")] == ["acme"]
        assert rt.settings.missing_credential("acme", "gcp") is None  # an emulator: no key
        run = request_collection(rt, "acme", "gcp", "cost", trigger="cli")
        done = collection.run_inline(rt, run.id)
        assert done.status == "success", done.error_message
        rows = rt.metrics().read_rows(COST_LINES, customer_id="acme", provider="gcp")
        assert by_day_service_currency(rows) == seeded.by_day_service_currency()
    finally:
        rt.close()


def test_a_missing_table_fails_at_once_naming_the_setting(make_env, billing_export, clock):
    missing_table = billing_export.billing_table + "_nope"
    rt = runtime(make_env, **emulator_env(billing_export, GCP_BILLING_TABLE=missing_table))
    try:
        done = collect(rt)
        assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "config")
        assert "GCP_BILLING_TABLE" in done.error_message and missing_table in done.error_message
    finally:
        rt.close()


# --- throttling, refusals, secrets ------------------------------------------------------------


def test_throttling_waits_and_succeeds(make_env, seeded, bq_front, tmp_path, clock):
    key = bq_front.service_account(tmp_path)
    rt = runtime(make_env, **front_env(bq_front, key, seeded))
    bq_front.throttle = ["429", "403", "429"]  # BigQuery throttles with both
    try:
        done = collect(rt)
        assert done.status == "success", done.error_message
        assert len(runs.attempts(done.id)) == 1  # waited inside the attempt: no failed try
        assert by_day_service_currency(stored(rt)) == seeded.by_day_service_currency()
        seen = [s for s in bq_front.seen if s.path != "/token"]
        assert [s.status for s in seen[:4]] == [429, 403, 429, 200]
        # Retry-After: 1 was honoured (a lower bound only: the machine may be slow).
        assert seen[1].at - seen[0].at >= 0.9
    finally:
        rt.close()


def test_a_refused_key_fails_at_once_naming_the_fix(make_env, seeded, bq_front, tmp_path, clock):
    from bq_fixtures import make_service_account

    stranger = make_service_account(tmp_path, bq_front.token_uri, "unknown")  # not registered
    rt = runtime(make_env, **front_env(bq_front, stranger, seeded))
    try:
        done = collect(rt)
        assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "auth")
        assert "GOOGLE_APPLICATION_CREDENTIALS" in done.error_message
        assert stranger.email in done.error_message
        assert not any(s.path.startswith("/bigquery") for s in bq_front.seen)
    finally:
        rt.close()


def test_missing_permissions_fail_at_once_naming_the_roles(
        make_env, seeded, bq_front, tmp_path, clock):
    key = bq_front.service_account(tmp_path)
    bq_front.deny = True
    rt = runtime(make_env, **front_env(bq_front, key, seeded))
    try:
        done = collect(rt)
        assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "auth")
        assert "BigQuery Data Viewer" in done.error_message
        assert "BigQuery Job User" in done.error_message
        assert key.email in done.error_message
    finally:
        rt.close()


@pytest.mark.parametrize("problem", ["unset", "no such file", "not JSON", "user credential"])
def test_a_bad_key_file_is_a_config_error_naming_the_variable(make_env, tmp_path, problem,
                                                              clock):
    path = tmp_path / "key.json"
    if problem == "not JSON":
        path.write_text("-----BEGIN PRIVATE KEY-----\nMIIEv\n")
    elif problem == "user credential":
        path.write_text('{"type": "authorized_user", "refresh_token": "1//secret"}')
    env = {"GOOGLE_APPLICATION_CREDENTIALS": "" if problem == "unset" else str(path),
           "GCP_BILLING_TABLE": "p.d.t", "BIGQUERY_API_URL": "https://127.0.0.1:9"}
    rt = runtime(make_env, **env)
    try:
        done = collect(rt)
        assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "config")
        assert "GOOGLE_APPLICATION_CREDENTIALS" in done.error_message
        assert "MIIEv" not in done.error_message and "1//secret" not in done.error_message
    finally:
        rt.close()


def test_no_secret_reaches_logs_history_or_the_queue(make_env, seeded, bq_front, tmp_path,
                                                     clock):
    from optiinfra_tui.logs import setup_logging

    key = bq_front.service_account(tmp_path)
    rt = runtime(make_env, **front_env(bq_front, key, seeded))
    setup_logging(rt.settings)
    bq_front.throttle = ["403", "429"]  # warnings in the log
    try:
        ok = collect(rt)
        assert ok.status == "success", ok.error_message
        bq_front.deny = True
        denied = collect(rt)
        assert denied.status == "failed"
    finally:
        rt.close()
    secrets = key.secret_lines() + sorted(bq_front.tokens)
    assert len(bq_front.tokens) >= 1 and len(secrets) > 10
    texts = [rt.settings.log_path.read_text()]
    texts += [repr(r.__data__) for r in runs.list_runs(limit=100)]
    texts += [repr(a.__data__) for run in (ok, denied) for a in runs.attempts(run.id)]
    queue = sqlite3.connect(rt.settings.home / "queue.db")
    texts += [bytes(r[0]).decode("latin-1") for r in queue.execute("select data from task")]
    queue.close()
    blob = "\n".join(texts)
    assert "rateLimitExceeded" in blob  # the log holds the throttling: it was looked at
    for secret in secrets:
        assert secret not in blob


# --- configuration and parsing (pure) ---------------------------------------------------------


def test_without_google_auth_the_error_names_the_extra(make_env, tmp_path, monkeypatch):
    path = tmp_path / "key.json"
    path.write_text('{"type": "service_account"}')
    monkeypatch.setitem(sys.modules, "google.oauth2", None)  # as if not installed
    settings = load_settings(make_env(GOOGLE_APPLICATION_CREDENTIALS=str(path),
                                      GCP_BILLING_TABLE="p.d.t"))
    with pytest.raises(ConfigError, match=r'pip install "optiinfra-tui\[gcp\]"'):
        get_collector("gcp", settings, settings.default_customer_id)


@pytest.mark.parametrize(("env", "needle"), [
    ({}, "GCP_BILLING_TABLE is not set"),
    ({"GCP_BILLING_TABLE": "just-a-table"}, "is not project.dataset.table"),
    ({"GCP_BILLING_TABLE": "p.d.t", "GCP_JOB_PROJECT": "bad project"}, "is not a project id"),
    ({"GCP_BILLING_TABLE": "p.d.t", "BIGQUERY_API_URL": "ftp://x"}, "BIGQUERY_API_URL"),
    ({"GCP_BILLING_TABLE": "p.d.t"}, "GOOGLE_APPLICATION_CREDENTIALS is not set"),
])
def test_configuration_errors_name_the_setting(make_env, env, needle):
    # The table, the project and the URL are checked at start; the key file when GCP collects.
    with pytest.raises(ConfigError, match=needle):
        settings = load_settings(make_env(**env))
        gcp.gcp_config(settings, settings.default_customer_id)


def test_only_plain_http_on_loopback_goes_without_a_token():
    assert gcp.is_emulator("http://127.0.0.1:9050")
    assert gcp.is_emulator("http://localhost:9050") and gcp.is_emulator("http://[::1]:1")
    assert not gcp.is_emulator("https://127.0.0.1:9050")
    assert not gcp.is_emulator("http://bigquery.example.com")
    assert not gcp.is_emulator("http://10.0.0.1:9050")


def test_money_is_parsed_from_text_only():
    assert gcp.parse_amount("1.000000001", "x") == Decimal("1.000000001")
    for bad in (1.1, Decimal("1.1"), None, "NaN", "1e400", "abc"):
        with pytest.raises(DataError):
            gcp.parse_amount(bad, "x")
    # Each FLOAT64 cost becomes NUMERIC before the sum, and the sum travels as text.
    sql = gcp.costs_sql("p.d.t")
    assert "SUM(CAST(cost AS NUMERIC))" in sql and "SUM(CAST(c.amount AS NUMERIC))" in sql
    assert "SUM(cost)" not in sql


def test_line_ids_are_deterministic_and_distinct_per_group():
    base = {"kind": "cost", "day": "2026-11-01", "service": "Compute Engine", "sku": "Core",
            "project": "p", "region": "us-east1", "currency": "USD", "month": "202611",
            "cost_type": "regular", "credit_type": "", "credit_name": ""}
    assert gcp.line_id(base) == gcp.line_id(dict(base))
    variants = [{**base, k: "other"} for k in base]
    assert len({gcp.line_id(v) for v in variants} | {gcp.line_id(base)}) == len(base) + 1
    assert gcp.invoice_period("202612") == date(2026, 12, 1)
    with pytest.raises(DataError):
        gcp.invoice_period("2026-12")
