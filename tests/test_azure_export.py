"""Azure `export` end to end: a Cost Management FOCUS export (gzip CSV or Parquet partitions and
their manifest.json) in the Azure double's storage account (List Blobs XML with markers, Get
Blob, bearer tokens for storage only), read by chDB's url() through the real task path; Python
reads only the listing and the manifests."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from azure_fixtures import run_once
from azure_focus import FocusExport, month, seeded_lines, totals
from fake_azure_blob import STORAGE_AUDIENCE

from optiinfra_tui.collectors.azure.export import parse_export_uri
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.rows import COST_LINES, COST_MANAGEMENT, DATA_EXPORT, PENDING_CHARGES
from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import collection, runs
from optiinfra_tui.worker.runtime import Runtime

FEB, MAR = date(2026, 2, 1), date(2026, 3, 1)
CENT = Decimal("0.01")


@pytest.fixture
def export(fake_azure) -> FocusExport:
    fake_azure.blob.page_size = 2  # List Blobs pages: every marker must be followed
    return FocusExport(fake_azure.blob)


@pytest.fixture
def lines() -> list:
    return seeded_lines(FEB, date(2026, 3, 14))


def live(rt, customer: str | None = None) -> list:
    customer = customer or rt.settings.default_customer_id
    return [r for table in (COST_LINES, PENDING_CHARGES)
            for r in rt.metrics().read_rows(table, customer, provider="azure")]


def stored(rt, key: str, customer: str | None = None) -> dict:
    """(day or service, currency) -> (billed, effective) of the live rows, exactly."""
    out: dict = defaultdict(lambda: (Decimal(0), Decimal(0)))
    for r in live(rt, customer):
        k = (r.charge_period_start.date().isoformat() if key == "day" else r.service_name,
             r.billing_currency)
        out[k] = (out[k][0] + r.billed_cost, out[k][1] + r.effective_cost)
    return dict(out)


def reported(rt, by: str) -> dict:
    """What `costs --by` reports: (key, currency) -> total, to the cent."""
    return {(t.key, t.currency): t.total.quantize(CENT)
            for t in rt.metrics().costs(by=by, customer_id=rt.settings.default_customer_id)
            if t.total.quantize(CENT)}


def billed_cents(lines: list, key: str) -> dict:
    return {k: b.quantize(CENT) for k, (b, _) in totals(lines, key).items() if b.quantize(CENT)}


def not_a_number(lines: list):
    """A CSV mangler: the second partition's first BilledCost (the row's second cell, after an
    empty AvailabilityZone) becomes text."""
    billed = lines[1]["BilledCost"]
    return lambda text: text.replace(f"\r\n,{billed},", "\r\n,twelve,", 1)


def blob_requests(fake) -> list:
    return [r for r in fake.requests if r.path.startswith(f"/{fake.blob.account}/")]


# --- totals, paging, idempotence, replacement --------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_totals_equal_the_files_and_unchanged_manifests_are_skipped(azure_rt, fake_azure,
                                                                    export, lines, fmt):
    # An older run of February, with other figures: only the newest run of a period counts.
    older = export.put_run(FEB, month(seeded_lines(FEB, date(2026, 2, 28), seed=99), FEB),
                           fmt=fmt)
    export.put_run(FEB, month(lines, FEB), files=3, fmt=fmt)
    export.put_run(MAR, month(lines, MAR), fmt=fmt)
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)

    run = run_once(rt, ("export",))
    assert run.status == "success", run.error_message
    assert run.metrics_collected == len(lines)
    listed = [r for r in blob_requests(fake_azure) if r.query.get("comp") == "list"]
    pages = -(-sum(len(b) for b in fake_azure.blob.containers.values()) // 2)
    assert len(listed) == pages > 4 and [bool(r.query.get("marker")) for r in listed] == (
        [False] + [True] * (pages - 1))
    # The token (for storage, not Resource Manager), the pages, the two newest manifests:
    # ClickHouse read the files itself.
    assert run.requests == 1 + pages + 2
    assert [r.body["scope"] for r in fake_azure.token_requests()] == [
        f"{STORAGE_AUDIENCE}/.default"]
    reads = [r for r in blob_requests(fake_azure) if "/part_" in r.path]
    assert reads and all(r.status in (200, 206) and r.version for r in reads)
    older_run = older[0].rsplit("/", 1)[0]
    assert not any(older_run in r.path for r in reads)

    # Exact, line for line summed: to the millionth, not just the cent.
    assert stored(rt, "day") == totals(lines, "day")
    assert stored(rt, "service") == totals(lines, "service")
    assert reported(rt, "day") == billed_cents(lines, "day")
    assert reported(rt, "service") == billed_cents(lines, "service")
    rows = live(rt)
    assert {r.source for r in rows} == {DATA_EXPORT}
    # FOCUS 1.0 names no invoice: the open month is an estimate, February is final.
    assert {(r.billing_period, r.is_estimate) for r in rows} == {(FEB, False), (MAR, True)}
    purchase = [r for r in rows if r.charge_category == "Purchase"]
    assert {r.billed_cost for r in purchase} == {Decimal("98765432109.876543")}
    assert {r.billing_currency for r in rows} == {"USD", "EUR"}  # never added together
    tagged = next(r for r in rows if r.service_name == "Storage")
    assert tagged.charge_description.startswith('Storage – D2s v3, "rg-')
    assert tagged.region_id == "westeurope" and tagged.resource_id.startswith("/subscriptions/")

    again = run_once(rt, ("export",))
    assert (again.status, again.metrics_collected) == ("success", 0)
    assert again.requests == pages  # the cached token; the listing only
    assert stored(rt, "day") == totals(lines, "day")
    assert len(live(rt)) == len(lines)


def test_a_new_run_replaces_its_period_whole(azure_rt, fake_azure, export, lines):
    export.put_run(FEB, month(lines, FEB))
    export.put_run(MAR, month(lines, MAR))
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)
    assert run_once(rt, ("export",)).status == "success"

    # Cost Management's next daily run: one group gone, one amount revised, one new line.
    restated = [dict(x) for x in month(lines, MAR)
                if not (x["ServiceName"] == "Bandwidth" and x["ChargePeriodStart"].day == 3)]
    restated[5]["BilledCost"] -= Decimal("3.5")
    restated.append(dict(restated[0], ServiceName="Key Vault", BilledCost=Decimal("0.000001"),
                         EffectiveCost=Decimal("0.000002")))
    export.put_run(MAR, restated, files=4)
    sent = len(fake_azure.requests)
    run = run_once(rt, ("export",))
    assert run.status == "success", run.error_message
    assert run.metrics_collected == len(restated)
    manifests = [r for r in fake_azure.requests[sent:] if r.path.endswith("manifest.json")]
    assert len(manifests) == 1 and "/20260301-20260331/" in manifests[0].path
    expected = month(lines, FEB) + restated
    assert stored(rt, "day") == totals(expected, "day")
    assert stored(rt, "service") == totals(expected, "service")
    assert len(live(rt)) == len(expected)


def test_an_exported_month_counts_instead_of_cost_management(azure_rt, fake_azure, export,
                                                            lines):
    """Both describe February's spend: its total comes from the export alone; March, not
    exported, from Cost Management."""
    export.put_run(FEB, month(lines, FEB))
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)
    run = run_once(rt, ("cost", "export"))
    assert run.status == "success", run.error_message
    assert {r.source for r in live(rt)} == {DATA_EXPORT, COST_MANAGEMENT}  # both stored
    cm = {(d, c): v for (d, c), v in fake_azure.totals("day").items() if d >= "2026-03-01"}
    expected = {**billed_cents(month(lines, FEB), "day"),
                **{k: v.quantize(CENT) for k, v in cm.items() if v.quantize(CENT)}}
    assert reported(rt, "day") == expected


# --- configuration and refusals ----------------------------------------------------------------


def test_a_missing_container_names_the_setting(azure_rt, fake_azure, export, lines):
    export.put_run(FEB, month(lines, FEB))
    rt = azure_rt(AZURE_EXPORT_URI=export.uri.replace("/cost-exports/", "/costs-typo/"))
    run = run_once(rt, ("export",))
    assert (run.status, run.error_kind, run.attempt) == ("failed", "config", 1)
    assert "has no container 'costs-typo'" in run.error_message
    assert "AZURE_EXPORT_URI" in run.error_message
    assert f"storage account {fake_azure.blob.account}" in run.error_message


def test_a_missing_role_names_storage_blob_data_reader(azure_rt, fake_azure, export, lines):
    export.put_run(FEB, month(lines, FEB))
    fake_azure.blob.denied = True
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)
    run = run_once(rt, ("export",))
    assert (run.status, run.error_kind, run.attempt) == ("failed", "auth", 1)
    for words in ("Storage Blob Data Reader", fake_azure.client_id, "AuthorizationPermission",
                  "AZURE_EXPORT_URI", f"storage account {fake_azure.blob.account}"):
        assert words in run.error_message
    assert live(rt) == []


def test_a_customer_names_its_export_in_its_azure_table(make_env, fake_azure, export, lines,
                                                        tmp_path):
    export.put_run(FEB, month(lines, FEB))
    env = fake_azure.env()
    secret = env.pop("AZURE_CLIENT_SECRET")
    tenant, client, scope = (env.pop(k) for k in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID",
                                                  "AZURE_COST_SCOPE"))
    base = make_env(**env)
    customer = "acme-" + base["DEFAULT_CUSTOMER_ID"]
    cfg = tmp_path / "acme.toml"
    table = (f'schedules = []\n[customers.{customer}.azure]\ntenant_id = "{tenant}"\n'
             f'client_id = "{client}"\nclient_secret_env = "ACME_AZURE_SECRET"\n'
             f'scope = "{scope}"\nexport_uri = "{{uri}}"\n')
    cfg.write_text(table.format(uri=export.uri))
    rt = Runtime(load_settings(dict(base, OPTIINFRA_CONFIG=str(cfg), ACME_AZURE_SECRET=secret)))
    try:
        rt.history()
        done = run_once(rt, ("export",), customer)
        assert done.status == "success", done.error_message
        assert stored(rt, "service", customer) == totals(month(lines, FEB), "service")
        fake_azure.blob.denied = True
        refused = run_once(rt, ("export",), customer)
        assert refused.error_kind == "auth"
        assert f"export_uri in [customers.{customer}.azure]" in refused.error_message
    finally:
        rt.close()
    bad = tmp_path / "bad.toml"
    bad.write_text(table.format(uri=export.uri.replace("https://", "http://")))
    with pytest.raises(ConfigError, match=rf"\[customers.{customer}.azure\]: export_uri in"):
        load_settings(dict(base, OPTIINFRA_CONFIG=str(bad)))


def test_no_export_or_no_manifest_is_a_clear_config_error(azure_rt, fake_azure, export):
    rt = azure_rt()
    none = run_once(rt, ("export",))
    assert none.error_kind == "config" and "AZURE_EXPORT_URI=https://" in none.error_message
    assert blob_requests(fake_azure) == []
    empty = run_once(azure_rt(AZURE_EXPORT_URI=export.uri), ("export",))
    assert empty.error_kind == "config"
    assert f"No export manifest under {export.blob.url}/cost-exports/focus/daily-focus/" in (
        empty.error_message)


def test_an_export_of_another_dataset_is_named(azure_rt, fake_azure, export, lines):
    export.put_run(FEB, month(lines, FEB), kind="ActualCost")
    run = run_once(azure_rt(AZURE_EXPORT_URI=export.uri), ("export",))
    assert (run.status, run.error_kind) == ("failed", "config")
    assert "names a ActualCost export" in run.error_message
    assert "Cost and usage details (FOCUS)" in run.error_message


@pytest.mark.parametrize("uri, problem", [
    ("http://acct.blob.core.windows.net/c1x/focus/x", "https only"),
    ("https://acct.blob.core.windows.net/c1x/focus/x?sv=2024&sig=abc", "no SAS token"),
    ("https://acct.blob.core.windows.net/c1x", "name the container and the export's folder"),
    ("https://acct.blob.core.windows.net/C_1/focus/x", "is not a container name"),
    ("https://Bad_Account.blob.core.windows.net/c1x/f/x", "is not a storage account name"),
    ("https://127.0.0.1:10000", "the account comes first in the path"),
])
def test_bad_export_uris_are_config_errors_naming_the_setting(uri, problem):
    with pytest.raises(ConfigError) as err:
        parse_export_uri(uri, "AZURE_EXPORT_URI")
    assert problem in str(err.value) and "AZURE_EXPORT_URI" in str(err.value)
    assert "sig=abc" not in str(err.value)


def test_export_uris_virtual_hosted_and_path_style():
    hosted = parse_export_uri("https://contosobilling.blob.core.windows.net/exports/focus/daily",
                              "x")
    assert (hosted.account_url, hosted.account, hosted.container, hosted.root) == (
        "https://contosobilling.blob.core.windows.net", "contosobilling", "exports",
        "focus/daily")
    local = parse_export_uri("https://127.0.0.1:10000/devstoreaccount1/exports/daily/", "x")
    assert (local.account_url, local.container, local.root) == (
        "https://127.0.0.1:10000/devstoreaccount1", "exports", "daily")
    assert local.blob_url("daily/a b.csv.gz") == (
        "https://127.0.0.1:10000/devstoreaccount1/exports/daily/a%20b.csv.gz")


# --- bad files: a clear error, nothing lost ----------------------------------------------------


def test_a_malformed_file_fails_clearly_and_the_period_keeps_its_figures(azure_rt, fake_azure,
                                                                         export, lines):
    export.put_run(FEB, month(lines, FEB))
    export.put_run(MAR, month(lines, MAR))
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)
    assert run_once(rt, ("export",)).status == "success"
    before = stored(rt, "day")

    # A new March run whose second partition has an amount that isn't a number.
    export.put_run(MAR, month(lines, MAR)[:40], mangle=not_a_number(month(lines, MAR)[:40]))
    run = run_once(rt, ("export",))
    assert (run.status, run.error_kind) == ("failed", "data")
    assert "ClickHouse could not read" in run.error_message and "part_" in run.error_message
    assert stored(rt, "day") == before  # the first partition's rows were taken back

    # Fixed by Cost Management's next run: read, because the failed one was never recorded.
    export.put_run(MAR, month(lines, MAR)[:40])
    fixed = run_once(rt, ("export",))
    assert fixed.status == "success", fixed.error_message
    assert stored(rt, "day") == totals(month(lines, FEB) + month(lines, MAR)[:40], "day")


def test_a_file_shorter_than_its_manifest_says_is_not_stored(azure_rt, fake_azure, export,
                                                             lines):
    export.put_run(FEB, month(lines, FEB))
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)
    assert run_once(rt, ("export",)).status == "success"
    before = stored(rt, "day")
    export.put_run(FEB, month(lines, FEB)[:-3], rows=len(month(lines, FEB)))
    run = run_once(rt, ("export",))
    assert (run.status, run.error_kind) == ("failed", "data")
    assert f"its manifest lists {len(month(lines, FEB)):,} rows" in run.error_message
    assert stored(rt, "day") == before


def test_a_manifest_that_is_not_json_is_a_data_error(azure_rt, fake_azure, export, lines):
    names = export.put_run(FEB, month(lines, FEB))
    fake_azure.blob.put("cost-exports", names[-1], b"<html>upload in progress</html>")
    run = run_once(azure_rt(AZURE_EXPORT_URI=export.uri), ("export",))
    assert (run.status, run.error_kind) == ("failed", "data")
    assert "is not a Cost Management export manifest" in run.error_message
    assert names[-1].split("/")[-2] in run.error_message  # which run's manifest


def test_no_token_or_secret_reaches_errors_history_or_the_metrics_store(azure_rt, fake_azure,
                                                                        export, lines):
    export.put_run(FEB, month(lines, FEB))
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)
    assert run_once(rt, ("export",)).status == "success"
    export.put_run(FEB, month(lines, FEB), mangle=not_a_number(month(lines, FEB)))
    failed = run_once(rt, ("export",))
    assert failed.status == "failed" and export.blob.url in failed.error_message
    rt.metrics()._command("SYSTEM FLUSH LOGS")
    secrets = [fake_azure.secret, *fake_azure.issued]
    for r in runs.list_runs(limit=20):
        assert not any(s in repr(r.__data__) for s in secrets)
    path = Path(rt.settings.clickhouse_url.removeprefix("chdb://"))
    leaked = [p for p in path.rglob("*") if p.is_file()
              and any(s.encode() in p.read_bytes() for s in secrets)]
    assert leaked == []


def test_export_runs_through_the_task_path_as_cost_does(azure_rt, fake_azure, export, lines):
    """`collect azure --types cost,export` in one run: both types, one history row."""
    export.put_run(FEB, month(lines, FEB))
    rt = azure_rt(AZURE_EXPORT_URI=export.uri)
    run = runs.create_run(rt.settings.default_customer_id, "azure", ("cost", "export"), "cli",
                          rt.settings.max_retries + 1)
    done = collection.run_inline(rt, run.id)
    assert done.status == "success", done.error_message
    assert done.metrics_collected == len(month(lines, FEB)) + len(fake_azure.groups())
