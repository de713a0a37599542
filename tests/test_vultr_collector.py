"""The Vultr collector against a real local HTTP server (tests/fake_vultr.py); no mocks."""

from __future__ import annotations

import gc
import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from fake_vultr import FakeVultr

from optiinfra_tui.collectors import get_collector
from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.collectors.http import ApiClient, PageRequest
from optiinfra_tui.collectors.ratelimit import RateLimiter, key_id, limiter_for
from optiinfra_tui.collectors.vultr import VultrCollector, next_cursor
from optiinfra_tui.errors import AuthError, ConfigError, DataError, TransientError
from optiinfra_tui.rows import (
    ACCOUNT_SNAPSHOTS,
    COST_LINES,
    LEDGER,
    PENDING_CHARGES,
    RESOURCES,
    Batch,
)
from optiinfra_tui.settings import load_settings

CUSTOMER = "default_customer"


def settings_for(tmp_path, url: str, token: str | None, rps: float = 500.0):
    env = {"OPTIINFRA_HOME": str(tmp_path), "VULTR_API_URL": url, "VULTR_MAX_RPS": str(rps)}
    if token is not None:
        env["VULTR_API_KEY"] = token
    return load_settings(env)


def context(**kw) -> CollectContext:
    return CollectContext(customer_id=CUSTOMER, run_id=1,
                          collected_at=datetime.now(UTC).replace(tzinfo=None), **kw)


def collect(fake: FakeVultr, tmp_path, data_type: str = "cost", rps: float = 500.0,
            per_page: int = 500, ctx: CollectContext | None = None) -> list[Batch]:
    collector = VultrCollector(settings_for(tmp_path, fake.url, fake.token, rps), CUSTOMER,
                               per_page=per_page)
    try:
        return list(collector.collect(data_type, ctx or context()))
    finally:
        collector.close()


def rows_of(batches: list[Batch], table: str) -> list:
    return [row for b in batches if b.table == table for row in b.rows]


def assert_full_cost(batches: list[Batch], fake: FakeVultr) -> None:
    lines, pending = rows_of(batches, COST_LINES), rows_of(batches, PENDING_CHARGES)
    assert [b.table for b in batches].count(PENDING_CHARGES) == 1
    assert batches[-1].table == PENDING_CHARGES
    assert len(lines) + len(pending) == fake.line_count()
    assert sum(r.billed_cost for r in lines + pending) == fake.total_cost()
    assert len({r.line_id for r in lines + pending}) == fake.line_count()
    assert all(not r.is_estimate for r in lines) and all(r.is_estimate for r in pending)


# --- cost -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fake_vultr", [{"invoices": 6, "items": 15, "pending": 5}],
                         indirect=True)
def test_full_backfill_matches_server_exactly(fake_vultr, tmp_path):
    batches = collect(fake_vultr, tmp_path)
    assert_full_cost(batches, fake_vultr)
    assert all(len(b.rows) <= 500 for b in batches)
    lines = rows_of(batches, COST_LINES)
    assert {r.charge_category for r in lines} == {"Usage", "Credit"}
    # The seeded duplicate: two identical lines on the oldest invoice are two charges.
    oldest = fake_vultr.invoice_ids()[-1]
    first_two = [r for r in lines if r.line_id in (f"inv:{oldest}:0", f"inv:{oldest}:1")]
    assert len(first_two) == 2 and first_two[0].billed_cost == first_two[1].billed_cost
    assert fake_vultr.count("/billing/invoices") == 1
    assert fake_vultr.count("/billing/pending-charges") == 1


def test_incremental_run_reads_only_new_and_latest_invoices(fake_vultr, tmp_path):
    first = collect(fake_vultr, tmp_path)
    known = frozenset(r.invoice_id for r in rows_of(first, COST_LINES))
    latest = fake_vultr.latest_invoice_id()
    assert known == set(fake_vultr.invoice_ids())
    fake_vultr.add_items(latest, 2)  # the latest invoice may still grow
    new = fake_vultr.add_invoice(items=4)
    fake_vultr.reset_records()

    second = collect(fake_vultr, tmp_path,
                     ctx=context(known_invoice_ids=known, latest_invoice_id=latest))
    item_paths = {p for p in fake_vultr.counts() if p.endswith("/items")}
    assert item_paths == {f"/v2/billing/invoices/{new}/items",
                          f"/v2/billing/invoices/{latest}/items"}
    assert fake_vultr.count() == 4  # invoice list, two item listings, pending charges
    lines = rows_of(second, COST_LINES)
    assert {r.invoice_id for r in lines} == {new, latest}
    assert len([r for r in lines if r.invoice_id == new]) == 4
    # Same charge, same line_id: merging both runs by line_id gives the server's total.
    merged = {r.line_id: r for r in rows_of(first, COST_LINES) + lines}
    assert sum(r.billed_cost for r in merged.values()) == fake_vultr.total_cost(False)


@pytest.mark.parametrize("fake_vultr", [{"invoices": 1, "items": 1201}], indirect=True)
def test_pages_of_500(fake_vultr, tmp_path):
    batches = collect(fake_vultr, tmp_path)
    assert_full_cost(batches, fake_vultr)
    invoice = fake_vultr.invoice_ids()[0]
    path = f"/v2/billing/invoices/{invoice}/items"
    assert [len(b.rows) for b in batches if b.table == COST_LINES] == [500, 500, 201]
    assert [r.query["per_page"] for r in fake_vultr.requests if r.path == path] == ["500"] * 3
    positions = [int(r.line_id.rsplit(":", 1)[1]) for r in rows_of(batches, COST_LINES)]
    assert positions == list(range(1201))  # positions run on across pages


@pytest.mark.parametrize("fake_vultr", [{"invoices": 12, "items": 23}], indirect=True)
def test_many_small_pages(fake_vultr, tmp_path):
    batches = collect(fake_vultr, tmp_path, per_page=5)
    assert_full_cost(batches, fake_vultr)
    assert fake_vultr.count("/billing/invoices") == 3
    assert fake_vultr.count() == 3 + 12 * 5 + 1


def test_responses_go_when_dropped_not_at_a_gc_pass(fake_vultr, tmp_path):
    # httpx binds a response and its stream to each other; each page's body would otherwise
    # wait for the cyclic garbage collector (and collections raise its threshold).
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        collect(fake_vultr, tmp_path, per_page=5)
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, httpx.Response)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert held == []


# --- rate limit and transient failures ------------------------------------------------------


@pytest.mark.parametrize("fake_vultr", [{"invoices": 12, "items": 3}], indirect=True)
def test_429s_are_retried_and_the_rate_limit_holds(fake_vultr, tmp_path):
    fake_vultr.rate_limit_every = 3
    started = time.monotonic()
    batches = collect(fake_vultr, tmp_path, rps=10)
    assert_full_cost(batches, fake_vultr)
    statuses = [r.status for r in fake_vultr.requests]
    assert statuses.count(429) >= 6 and statuses.count(200) == 14
    assert fake_vultr.max_in_window(1.0) <= 10
    assert time.monotonic() - started >= (len(statuses) - 1) / 10


@pytest.mark.parametrize("fake_vultr", [{"invoices": 8, "items": 2}], indirect=True)
def test_threads_sharing_a_key_share_its_limit(fake_vultr, tmp_path):
    results: list[list[Batch]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(collect(fake_vultr, tmp_path, rps=10))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(results) == 3
    for batches in results:
        assert_full_cost(batches, fake_vultr)
    assert fake_vultr.count() == 3 * 10
    assert fake_vultr.max_in_window(1.0) <= 10


def test_503_twice_then_success_without_retry_after(fake_vultr, tmp_path):
    fake_vultr.retry_after = None  # exercise the client's own back-off
    fake_vultr.fail_503(2)
    assert_full_cost(collect(fake_vultr, tmp_path), fake_vultr)
    assert [r.status for r in fake_vultr.requests[:3]] == [503, 503, 200]


def test_503_forever_is_transient(fake_vultr, tmp_path):
    fake_vultr.retry_after = "0.01"
    fake_vultr.fail_503(float("inf"))
    with pytest.raises(TransientError, match="HTTP 503") as info:
        collect(fake_vultr, tmp_path)
    assert fake_vultr.count() == 5  # one request + four retries inside it
    assert info.value.retry_after == pytest.approx(0.01)


def test_long_retry_after_is_left_to_the_task(fake_vultr, tmp_path):
    fake_vultr.retry_after = "120"
    fake_vultr.rate_limit_every = 1
    with pytest.raises(TransientError) as info:
        collect(fake_vultr, tmp_path)
    assert info.value.retry_after == 120
    assert fake_vultr.count() == 1


def test_connection_refused_is_transient(tmp_path):
    with FakeVultr() as fake:
        url = fake.url
    client = ApiClient(url, "tok", RateLimiter(1000), timeout=2, backoff_base=0.01)
    with client, pytest.raises(TransientError, match="ConnectError"):
        client.get_json("/account")


def test_an_unreachable_host_is_named_with_where_its_address_comes_from():
    from services import free_port

    url = f"http://127.0.0.1:{free_port()}/v2"
    host = url.split("/")[2]
    set_by_env = ApiClient(url, "tok", RateLimiter(1000), timeout=2, backoff_base=0.01,
                           service="Vultr", url_env="VULTR_API_URL",
                           default_url="https://api.vultr.com/v2")
    with set_by_env, pytest.raises(TransientError) as info:
        set_by_env.get_json("/account")
    assert str(info.value) == (
        f"Vultr GET /account: can't connect to {host}, from VULTR_API_URL={url} "
        "(ConnectError: [Errno 111] Connection refused). Check that VULTR_API_URL points at a "
        "running Vultr API, or unset it to use https://api.vultr.com/v2.")
    # The same address as the default: the message says so, and points at the network.
    default = ApiClient(url, "tok", RateLimiter(1000), timeout=2, backoff_base=0.01,
                        service="Vultr", url_env="VULTR_API_URL", default_url=url)
    with default, pytest.raises(TransientError) as info:
        default.get_json("/account")
    assert (f"can't connect to {host}, the default Vultr API host (VULTR_API_URL is not set)"
            in str(info.value))
    assert "network access" in str(info.value) and "attempts" not in str(info.value)


# --- failures that are not retried ------------------------------------------------------------


def test_wrong_key_is_an_auth_error_at_once(fake_vultr, tmp_path):
    wrong = "wrong-" + secrets.token_hex(8)
    collector = VultrCollector(settings_for(tmp_path, fake_vultr.url, wrong), CUSTOMER)
    with pytest.raises(AuthError, match="VULTR_API_KEY") as info:
        list(collector.collect("cost", context()))
    collector.close()
    assert fake_vultr.count() == 1
    assert "Invalid API token" in str(info.value)
    assert wrong not in str(info.value)


def test_missing_key_is_a_config_error_before_any_request(fake_vultr, tmp_path):
    settings = settings_for(tmp_path, fake_vultr.url, None)
    with pytest.raises(ConfigError, match="VULTR_API_KEY"):
        VultrCollector(settings, CUSTOMER)
    with pytest.raises(ConfigError, match="VULTR_API_KEY"):
        get_collector("vultr", settings, CUSTOMER)
    assert fake_vultr.count() == 0


def test_unknown_provider_and_data_type(fake_vultr, tmp_path):
    settings = settings_for(tmp_path, fake_vultr.url, fake_vultr.token)
    with pytest.raises(ConfigError, match="oracle"):
        get_collector("oracle", settings, CUSTOMER)
    collector = get_collector("vultr", settings, CUSTOMER)
    with pytest.raises(ConfigError, match="billing"):
        collector.collect("billing", context())
    other = CollectContext(customer_id="someone_else", run_id=1, collected_at=datetime(2024, 1, 1))
    with pytest.raises(ConfigError, match="someone_else"):
        collector.collect("cost", other)
    collector.close()
    assert fake_vultr.count() == 0


def test_wrong_base_url_is_a_config_error(fake_vultr, tmp_path):
    collector = VultrCollector(settings_for(tmp_path, fake_vultr.root + "/v1", fake_vultr.token),
                               CUSTOMER)
    with pytest.raises(ConfigError, match="VULTR_API_URL"):
        collector.ping()
    collector.close()
    client = ApiClient(fake_vultr.url, fake_vultr.token, RateLimiter(1000))
    client.get_json("/account")
    with pytest.raises(DataError, match="404"):  # the base URL is fine: the invoice is gone
        client.get_json("/billing/invoices/1/items")
    client.close()


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/billing/invoices/{latest}/items", "not_json"),
     ("/billing/invoices", "missing_key"),
     ("/billing/pending-charges", "missing_key"),
     ("/billing/pending-charges", "not_object")],
)
def test_malformed_answers_are_data_errors(fake_vultr, tmp_path, path, kind):
    path = path.format(latest=fake_vultr.latest_invoice_id())
    fake_vultr.malformed(path, kind)
    with pytest.raises(DataError):
        collect(fake_vultr, tmp_path)
    assert fake_vultr.count(path) == 1  # not retried


@pytest.mark.parametrize("fake_vultr", [{"invoices": 1, "items": 20}], indirect=True)
def test_repeated_cursor_ends_the_walk_with_a_warning(fake_vultr, tmp_path, caplog):
    path = f"/billing/invoices/{fake_vultr.latest_invoice_id()}/items"
    fake_vultr.repeat_cursor(path)
    with caplog.at_level(logging.WARNING, logger="optiinfra.collectors"):
        batches = collect(fake_vultr, tmp_path, per_page=5)
    assert fake_vultr.count(path) == 2
    assert len(rows_of(batches, COST_LINES)) == 10
    assert any("repeated a page cursor" in r.getMessage() for r in caplog.records)


def test_page_cap_ends_the_walk_with_a_warning(fake_vultr, caplog):
    client = ApiClient(fake_vultr.url, fake_vultr.token, RateLimiter(1000))
    with client, caplog.at_level(logging.WARNING, logger="optiinfra.collectors"):
        pages = list(client.pages(PageRequest("/billing/history", {"per_page": 1}),
                                  next_cursor, max_pages=2))
    assert len(pages) == 2
    assert any("2-page cap" in r.getMessage() for r in caplog.records)


# --- account, resources, ping -----------------------------------------------------------------


def test_account_and_billing_history(fake_vultr, tmp_path):
    batches = collect(fake_vultr, tmp_path, "account", per_page=2)
    assert batches[0].table == ACCOUNT_SNAPSHOTS
    (snap,) = batches[0].rows
    assert snap.pending_charges == fake_vultr.account()["pending_charges"]
    assert snap.balance == Decimal("-100.55")
    ledger = rows_of(batches, LEDGER)
    assert [e.line_id for e in ledger] == [f"bh:{e['id']}" for e in fake_vultr.billing_history()]


def test_instances(fake_vultr, tmp_path):
    rows = rows_of(collect(fake_vultr, tmp_path, "resource"), RESOURCES)
    served = fake_vultr.instances()
    assert [r.resource_id for r in rows] == [i["id"] for i in served]
    assert [(r.resource_name, r.plan, r.region_id, r.vcpu_count, r.ram_mb, r.disk_gb)
            for r in rows] == [(i["label"], i["plan"], i["region"], i["vcpu_count"], i["ram"],
                                i["disk"]) for i in served]


def test_ping(fake_vultr, tmp_path):
    collector = VultrCollector(settings_for(tmp_path, fake_vultr.url, fake_vultr.token), CUSTOMER)
    assert 0 <= collector.ping() < 5
    collector.close()
    assert fake_vultr.count("/account") == 1


# --- rate limiter and secrets -----------------------------------------------------------------


def test_limiter_spacing_across_threads():
    limiter = RateLimiter(50)
    stamps: list[float] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(15):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    # Threads wake a little late at times, so single gaps vary; no 1-second window may overfill.
    assert all(stamps[i + 50] - stamps[i] >= 1.0 for i in range(len(stamps) - 50))
    assert stamps[-1] - stamps[0] >= 59 / 50


def test_limiter_registry_is_per_key_and_keyless():
    key = "k-" + secrets.token_hex(8)
    assert limiter_for(key, 5) is limiter_for(key, 5)
    assert limiter_for(key, 5) is not limiter_for(key + "x", 5)
    assert limiter_for(key, 7).rate == 7
    assert key not in key_id(key) and key not in repr(limiter_for(key, 7))


def test_the_key_appears_in_no_message_log_or_repr(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with FakeVultr(invoices=2, items=3, retry_after="0") as fake:
        settings = settings_for(tmp_path, fake.url, fake.token)
        collector = VultrCollector(settings, CUSTOMER)
        texts += [repr(collector), repr(collector._client), repr(settings)]
        fake.rate_limit_every = 2
        list(collector.collect("cost", context()))  # retries log warnings
        fake.clear_faults()
        for setup in (lambda: fake.fail_503(float("inf")),
                      lambda: fake.malformed("/billing/invoices", "not_json"),
                      lambda: setattr(fake, "token", "rotated-" + secrets.token_hex(4))):
            setup()
            with pytest.raises(Exception) as info:
                list(collector.collect("cost", context()))
            texts += [str(info.value), repr(info.value)]
            fake.clear_faults()
        collector.close()
        secret = settings.credential(CUSTOMER, "vultr")
    texts += [r.getMessage() for r in caplog.records]
    assert any("retrying" in t for t in texts)
    assert not [t for t in texts if secret in t]
