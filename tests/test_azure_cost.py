"""Azure `cost` end to end against a local HTTPS double of Entra ID and Cost Management
(tests/fake_azure.py): the real task path (Runtime + collection.execute_run, or a worker pool),
real chDB, real TLS with a certificate the test makes. No internet."""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from decimal import Decimal

import pytest
from azure_fixtures import TODAY, run_once
from fake_azure import FakeAzure
from services import wait_until

from optiinfra_tui.collectors import get_collector
from optiinfra_tui.collectors.azure import (
    AzureAccount,
    access_token,
    charge_category,
    check_account,
    parse_page,
)
from optiinfra_tui.errors import AuthError, ConfigError, DataError
from optiinfra_tui.rows import COST_LINES, PENDING_CHARGES
from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import collection, runs
from optiinfra_tui.worker.pool import WorkerPool
from optiinfra_tui.worker.runtime import Runtime

CENT = Decimal("0.01")


def stored(rt: Runtime) -> list:
    customer = rt.settings.default_customer_id
    store = rt.metrics()
    return [r for table in (COST_LINES, PENDING_CHARGES)
            for r in store.read_rows(table, customer, provider="azure")]


def stored_groups(rt: Runtime) -> dict:
    groups = {}
    for r in stored(rt):
        key = (r.charge_period_start.date(), r.service_name, r.charge_description.rsplit(
            " (", 1)[1].rstrip(")"), r.billing_currency)
        assert key not in groups
        groups[key] = (r.billed_cost, r.effective_cost)
    return groups


def totals(rt: Runtime, by: str) -> dict[tuple[str, str], Decimal]:
    rows = rt.metrics().costs(by=by, customer_id=rt.settings.default_customer_id)
    return {(t.key, t.currency): t.total for t in rows if t.total or t.rows}


def cents(values: dict) -> dict:
    return {k: v.quantize(CENT) for k, v in values.items() if v.quantize(CENT)}


def assert_matches_truth(rt: Runtime, fake: FakeAzure) -> None:
    assert stored_groups(rt) == fake.groups()  # every group, billed and effective, exact
    assert cents(totals(rt, "day")) == cents(fake.totals("day"))
    assert cents(totals(rt, "service")) == cents(fake.totals("service"))


# --- totals, pages, idempotence, replacement ---------------------------------------------------


def test_totals_per_day_service_and_currency_equal_the_truth_across_pages(azure_rt, fake_azure):
    rt = azure_rt()
    run = run_once(rt)
    assert run.status == "success", run.error_message
    assert run.attempt == 1
    assert run.metrics_collected == len(fake_azure.groups())
    # The run records its requests as every provider's do: the token and each query page.
    assert run.requests == len(fake_azure.requests) == 1 + len(fake_azure.queries())
    assert_matches_truth(rt, fake_azure)
    queries = fake_azure.queries()
    assert {q.body["type"] for q in queries} == {"ActualCost", "AmortizedCost"}
    for kind in ("ActualCost", "AmortizedCost"):
        pages = [q for q in queries if q.body["type"] == kind]
        expected = -(-len(fake_azure.truth[kind]) // fake_azure.page_size)
        assert len(pages) == expected > 2  # every nextLink followed, nothing more
        assert all(q.body == pages[0].body for q in pages)  # the same body, re-POSTed
        assert [bool(q.query.get("$skiptoken")) for q in pages] == [False] + [True] * (
            expected - 1)
        assert pages[0].body["timePeriod"] == {"from": "2026-02-01T00:00:00+00:00",
                                               "to": "2026-03-15T23:59:59+00:00"}
    # Exact: the reservation purchase has more digits than a float keeps.
    purchase = stored_groups(rt)[(date(2026, 2, 1), "Virtual Machines", "Purchase", "USD")]
    assert purchase == (Decimal("98765432109.876543"), Decimal(0))
    # Currencies are never added together.
    assert {c for _, c in totals(rt, "day")} == {"USD", "EUR"}


def test_categories_estimates_and_source(azure_rt, fake_azure):
    rt = azure_rt()
    assert run_once(rt).status == "success"
    rows = stored(rt)
    assert {r.source for r in rows} == {"cost_management"}
    assert {r.charge_category for r in rows} == {"Usage", "Purchase", "Credit", "Tax",
                                                 "Adjustment"}
    assert all(r.is_estimate == (r.billing_period == date(2026, 3, 1)) for r in rows)
    assert {r.billing_account_id for r in rows} == {fake_azure.scope}


def test_credits_are_credit_rows_and_sum_to_the_truth(azure_rt, fake_azure):
    rt = azure_rt()
    assert run_once(rt).status == "success"
    credits = [r for r in stored(rt) if r.charge_category == "Credit"]
    truth = {k: v for k, v in fake_azure.groups().items() if k[2] == "Refund"}
    assert len(credits) == len(truth) == 3  # Feb 5, Feb 20, Mar 5
    assert all(r.billed_cost < 0 for r in credits)
    assert sum(r.billed_cost for r in credits) == sum(a for a, _ in truth.values())
    assert sum(r.effective_cost for r in credits) == sum(b for _, b in truth.values())


def test_collecting_twice_changes_nothing(azure_rt, fake_azure):
    rt = azure_rt()
    assert run_once(rt).status == "success"
    first = (stored_groups(rt), totals(rt, "day"), totals(rt, "service"))
    sent = len(fake_azure.requests)
    second = run_once(rt)
    assert second.status == "success"
    assert second.requests == len(fake_azure.requests) - sent  # the cached token: queries only
    assert not fake_azure.token_requests()[1:]
    assert (stored_groups(rt), totals(rt, "day"), totals(rt, "service")) == first
    assert rt.metrics().count_rows(COST_LINES, rt.settings.default_customer_id) + \
        rt.metrics().count_rows(PENDING_CHARGES, rt.settings.default_customer_id) == len(
            fake_azure.groups())
    assert_matches_truth(rt, fake_azure)


def test_a_changed_closed_month_and_vanished_groups_leave_exactly_the_new_figures(azure_rt,
                                                                                  fake_azure):
    rt = azure_rt()
    assert run_once(rt).status == "success"
    changed = (date(2026, 2, 10), "Storage", "Usage", "USD")
    gone_closed = (date(2026, 2, 11), "Bandwidth", "Usage", "USD")
    gone_open = (date(2026, 3, 2), "Azure App Service", "Usage", "USD")
    new = (date(2026, 2, 12), "Key Vault", "Usage", "USD")
    fake_azure.set_group(changed, Decimal("1.234567"), Decimal("1.200001"))
    fake_azure.set_group(gone_closed, None, None)
    fake_azure.set_group(gone_open, None, None)
    fake_azure.set_group(new, Decimal("0.000001"), Decimal("0.000002"))
    run = run_once(rt)
    assert run.status == "success", run.error_message
    groups = stored_groups(rt)
    assert groups[changed] == (Decimal("1.234567"), Decimal("1.200001"))
    assert gone_closed not in groups and gone_open not in groups
    assert groups[new] == (Decimal("0.000001"), Decimal("0.000002"))
    assert_matches_truth(rt, fake_azure)


# --- throttling, credentials, configuration ----------------------------------------------------


@pytest.mark.parametrize("fake_azure", [{"page_size": 60}], indirect=True)
def test_throttling_waits_what_the_headers_say_and_succeeds(azure_rt, fake_azure):
    rt = azure_rt()
    # The second query request (a nextLink page) is throttled; Cost Management's own header
    # asks for longer than Retry-After: the longer wait wins.
    fake_azure.throttle(2, **{"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "2",
                              "Retry-After": "1"})
    run = run_once(rt)
    assert run.status == "success", run.error_message
    assert run.attempt == 1  # waited inside the attempt, not a failed attempt
    assert run.requests == len(fake_azure.requests)  # the throttled one counts
    queries = fake_azure.queries()
    throttled = next(i for i, q in enumerate(queries) if q.status == 429)
    retried = queries[throttled + 1]
    assert retried.status == 200 and retried.body == queries[throttled].body
    assert retried.query == queries[throttled].query
    assert retried.t - queries[throttled].t >= 1.9  # the header's 2 s, not Retry-After's 1 s
    assert_matches_truth(rt, fake_azure)


@pytest.mark.parametrize("override, names", [
    ({"AZURE_CLIENT_SECRET": "not-the-secret-value"}, ("AZURE_CLIENT_SECRET", "AADSTS7000215")),
    ({"AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000000"}, ("AZURE_CLIENT_ID",
                                                                    "AADSTS700016")),
    ({"AZURE_TENANT_ID": "11111111-1111-1111-1111-111111111111"}, ("AZURE_TENANT_ID",
                                                                    "AADSTS90002")),
])
def test_bad_credentials_fail_at_once_naming_the_fix(azure_rt, fake_azure, override, names):
    rt = azure_rt(**override)
    run = run_once(rt)
    assert run.status == "failed"
    assert run.error_kind == "auth" and run.attempt == 1  # no retry of a refused credential
    for name in names:
        assert name in run.error_message
    assert fake_azure.queries() == []  # nothing asked of Cost Management
    for secret in (fake_azure.secret, "not-the-secret-value"):
        assert secret not in run.error_message


def test_a_missing_role_on_the_scope_names_cost_management_reader(azure_rt, fake_azure):
    fake_azure.denied = True
    rt = azure_rt()
    run = run_once(rt)
    assert run.status == "failed" and run.error_kind == "auth" and run.attempt == 1
    assert "Cost Management Reader" in run.error_message
    assert fake_azure.scope in run.error_message and fake_azure.client_id in run.error_message
    assert len(fake_azure.queries()) == 1
    assert run.requests == 2  # a failed run's requests count too: the token, the refused query


def test_missing_settings_are_config_errors_before_any_request(make_env, fake_azure):
    # The scope is what gives the default customer Azure; with it, the rest is checked at start.
    env = fake_azure.env()
    del env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"]
    with pytest.raises(ConfigError, match="AZURE_TENANT_ID, AZURE_CLIENT_ID are not set"):
        load_settings(make_env(**env))
    del env["AZURE_COST_SCOPE"]
    settings = load_settings(make_env(**env))
    with pytest.raises(ConfigError, match="has no Azure access configured. Set AZURE_COST_SCOPE"):
        get_collector("azure", settings, settings.default_customer_id)
    env = {**fake_azure.env(), "AZURE_CLIENT_SECRET": ""}
    settings = load_settings(make_env(**env))
    assert settings.missing_credential(settings.default_customer_id, "azure") == (
        "AZURE_CLIENT_SECRET")
    with pytest.raises(ConfigError, match="AZURE_CLIENT_SECRET is not set"):
        get_collector("azure", settings, settings.default_customer_id)
    with pytest.raises(ConfigError, match="AZURE_AUTHORITY_HOST must be an https:// URL"):
        load_settings(make_env(**{**fake_azure.env(), "AZURE_AUTHORITY_HOST":
                                  "http://127.0.0.1:1"}))
    assert fake_azure.requests == []


def test_a_customer_names_its_app_secret_variable_and_scope_in_its_azure_table(
        make_env, fake_azure, tmp_path):
    env = fake_azure.env()
    secret = env.pop("AZURE_CLIENT_SECRET")
    tenant, client, scope = (env.pop(k) for k in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID",
                                                  "AZURE_COST_SCOPE"))
    base = make_env(**env)
    customer = "acme-" + base["DEFAULT_CUSTOMER_ID"]  # its own rows in the shared store
    cfg = tmp_path / "acme.toml"
    cfg.write_text(f'schedules = []\n[customers.{customer}.azure]\ntenant_id = "{tenant}"\n'
                   f'client_id = "{client}"\nclient_secret_env = "ACME_AZURE_SECRET"\n'
                   f'scope = "{scope}"\n')
    rt = Runtime(load_settings(dict(base, OPTIINFRA_CONFIG=str(cfg), ACME_AZURE_SECRET=secret)))
    try:
        rt.history()
        assert [c.id for c in rt.settings.customers_with("azure")] == [customer]
        assert secret in rt.settings.secrets()
        run = runs.create_run(customer, "azure", ("cost",), "cli", rt.settings.max_retries + 1)
        done = collection.run_inline(rt, run.id)
        assert done.status == "success", done.error_message
        rows = [r for table in (COST_LINES, PENDING_CHARGES)
                for r in rt.metrics().read_rows(table, customer, provider="azure")]
        assert len(rows) == len(fake_azure.groups())
        assert sum(r.billed_cost for r in rows) == sum(b for b, _ in fake_azure.groups().values())
    finally:
        rt.close()
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace(f'scope = "{scope}"', 'scope = "everything"'))
    with pytest.raises(ConfigError, match=rf"\[customers.{customer}.azure\]: scope in"):
        load_settings(dict(base, OPTIINFRA_CONFIG=str(bad)))


def test_an_unreachable_authority_is_transient_and_retried(azure_rt, fake_azure):
    rt = azure_rt(AZURE_AUTHORITY_HOST="https://127.0.0.1:1", MAX_RETRIES="1")
    run = run_once(rt)
    assert run.status == "failed" and run.error_kind == "transient"
    assert run.attempt == 2  # retried once, then given up
    assert "AZURE_AUTHORITY_HOST" in run.error_message and "127.0.0.1:1" in run.error_message


def test_ping_reads_the_scope_without_a_query(azure_rt, fake_azure):
    rt = azure_rt()
    collector = get_collector("azure", rt.settings, rt.settings.default_customer_id)
    try:
        assert collector.ping() >= 0
        assert fake_azure.queries() == [] and collector.requests == 2  # token + one GET
        fake_azure.denied = True
        with pytest.raises(AuthError, match="Cost Management Reader"):
            collector.ping()
    finally:
        collector.close()


def test_an_untrusted_certificate_is_a_config_error_naming_ssl_cert_file(azure_rt, fake_azure,
                                                                         monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE")
    run = run_once(azure_rt())
    assert run.status == "failed" and run.error_kind == "config" and run.attempt == 1
    assert "SSL_CERT_FILE" in run.error_message and "AZURE_AUTHORITY_HOST" in run.error_message


def test_an_untrusted_resource_manager_is_a_config_error_naming_ssl_cert_file(
        azure_rt, fake_azure, untrusted_cert):
    # The token comes from the trusted authority; Resource Manager's certificate is not trusted.
    with FakeAzure(untrusted_cert, TODAY) as arm:
        fake_azure.resource = arm.url
        run = run_once(azure_rt(AZURE_RESOURCE_MANAGER_URL=arm.url, MAX_RETRIES="1"))
        assert arm.requests == []  # no request got through the handshake
        host = f"127.0.0.1:{arm.port}"
    assert run.status == "failed" and run.error_kind == "config", run.error_message
    assert run.attempt == 1  # not retried: no retry makes a certificate trusted
    assert run.requests == 2  # the token, then one try: none inside the request either
    assert len(fake_azure.token_requests()) == 1
    for name in ("SSL_CERT_FILE", "AZURE_RESOURCE_MANAGER_URL", host,
                 "self-signed certificate"):
        assert name in run.error_message
    assert "connect" not in run.error_message.lower()


def test_the_token_is_cached_across_threads_and_runs(azure_rt, fake_azure):
    account = AzureAccount(fake_azure.tenant, fake_azure.client_id, "AZURE_CLIENT_SECRET",
                           fake_azure.scope)
    got: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        got.append(access_token(fake_azure.url, fake_azure.url, account, fake_azure.secret))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len({token for token, _ in got}) == 1
    assert sorted(fetched for _, fetched in got) == [False] * 7 + [True]
    rt = azure_rt()
    assert run_once(rt).status == "success"
    assert run_once(rt).status == "success"
    assert len(fake_azure.token_requests()) == 1  # eight threads and two runs, one token


# --- no secret anywhere ------------------------------------------------------------------------


def test_no_secret_reaches_the_queue_history_or_logs(azure_rt, fake_azure):
    from optiinfra_tui.logs import setup_logging

    rt = azure_rt()
    setup_logging(rt.settings)
    customer = rt.settings.default_customer_id
    fake_azure.throttle(1, **{"Retry-After": "0.2"})  # a warning in the log
    # Enqueued as any trigger does (a run recorded by the task itself: `collect azure` comes
    # with the provider seam).
    task = rt.tasks.collect_data_task.s(customer, "azure", ["cost"], run_id=None, trigger="cli")
    rt.huey.enqueue(task)
    queue_db = sqlite3.connect(rt.settings.home / "queue.db")
    payloads = b"".join(bytes(r[0]) for r in queue_db.execute("select data from task"))
    assert payloads and fake_azure.secret.encode() not in payloads
    pool = WorkerPool(rt, workers=1, kind="test")
    pool.start()
    try:
        done = wait_until(lambda: [r for r in runs.list_runs(limit=10) if r.is_final
                                   and r.task_id == task.id], timeout=60)
        assert done and done[0].status == "success", done and done[0].error_message
        fake_azure.denied = True  # a refusal's message, too, goes to history and the log
        failed = run_once(rt)
        assert failed.status == "failed"
    finally:
        pool.stop(timeout=10)
    secrets = [fake_azure.secret, *fake_azure.issued]
    log = rt.settings.log_path.read_text()
    assert "429" in log  # the throttled request was logged, without a secret
    for r in runs.list_runs(limit=100):
        for a in runs.attempts(r.id):
            assert not any(s in repr(a.__data__) for s in secrets)
        assert not any(s in repr(r.__data__) for s in secrets)
    assert not any(s in log for s in secrets)
    collector = get_collector("azure", rt.settings, customer)
    assert not any(s in repr(collector) + repr(collector.account) for s in secrets)


# --- pure parsing ------------------------------------------------------------------------------


def test_a_page_is_read_by_column_name():
    body = {"properties": {"columns": [
        {"name": "Currency"}, {"name": "ChargeType"}, {"name": "UsageDate"}, {"name": "Extra"},
        {"name": "ServiceName"}, {"name": "Cost"}],
        "rows": [["usd", "Refund", 20260203, None, "Storage", Decimal("-1.10")],
                 ["EUR", "Usage", "2026-02-04T00:00:00", 1, "", 3]]}}
    assert list(parse_page(body, "p")) == [
        (date(2026, 2, 3), "Storage", "Refund", "USD", Decimal("-1.10")),
        (date(2026, 2, 4), "", "Usage", "EUR", Decimal(3))]
    del body["properties"]["columns"][0]
    with pytest.raises(DataError, match="no Currency column"):
        list(parse_page(body, "p"))


@pytest.mark.parametrize("charge_type, category", [
    ("Usage", "Usage"), ("Purchase", "Purchase"), ("Refund", "Credit"), ("Credit", "Credit"),
    ("Tax", "Tax"), ("UnusedReservation", "Adjustment"), ("RoundingAdjustment", "Adjustment"),
    ("usage", "Usage"),
])
def test_charge_categories(charge_type, category):
    assert charge_category(charge_type) == category


@pytest.mark.parametrize("scope", ["/foo/bar", "/subscriptions/../x", "/subscriptions/a?b=c",
                                   "subscriptions/a b"])
def test_bad_scopes_are_config_errors(scope):
    with pytest.raises(ConfigError, match="AZURE_COST_SCOPE"):
        check_account(AzureAccount("t", "c", "X", scope))
