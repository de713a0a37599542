"""AWS Data Exports end to end: FOCUS Parquet and CUR 2.0 gzip CSV written into moto's S3 by the
test, read by chDB's s3() through the real task path; Python reads only the manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from aws_fixtures import (
    FEB,
    MAR,
    by_day,
    by_day_and_service,
    collect,
    live_rows,
    reported_by_day,
    stored,
)
from aws_truth import (
    ExportWriter,
    ce_pages,
    cur_rows,
    focus_rows,
    seeded_truth,
)

from optiinfra_tui.collectors.aws.cost_explorer import charge_category
from optiinfra_tui.collectors.aws.exports import category_sql
from optiinfra_tui.rows import COST_EXPLORER, DATA_EXPORT

JAN = date(2026, 1, 1)
CLI = [sys.executable, "-m", "optiinfra_tui.cli"]
CENT = Decimal("0.01")


def month(truth, first: date):
    return {k: v for k, v in truth.items() if first <= k[0] < (first + timedelta(days=32))
            .replace(day=1)}


@pytest.fixture
def focus(aws) -> ExportWriter:
    return ExportWriter(aws.s3(), "billing-exports", "cur/focus-daily")


@pytest.fixture
def cur(aws) -> ExportWriter:
    return ExportWriter(aws.s3(), "billing-exports", "cur2/legacy-shaped")


def test_focus_parquet_totals_equal_the_truth_and_unchanged_manifests_are_skipped(
        runtime, aws, clock, focus):
    truth = seeded_truth(JAN, 59)  # Jan 1 .. Feb 28
    focus.put_parquet(JAN, focus_rows(month(truth, JAN)))
    focus.put_parquet(FEB, focus_rows(month(truth, FEB)))
    rt = runtime(AWS_EXPORT_URI=focus.uri)

    done = collect(rt, ("export",))
    assert done.status == "success", done.error_message
    lines = len(focus_rows(truth))
    assert done.metrics_collected == lines
    assert done.requests == 3  # the listing and two manifests; ClickHouse read the files
    assert stored(rt) == {k: (b, e, n) for k, (b, e, _) in by_day_and_service(truth).items()
                          for n in [sum(1 for r in focus_rows(truth)
                                        if (r["ChargePeriodStart"].date(), r["ServiceName"],
                                            r["BillingCurrency"]) == k)]}
    assert reported_by_day(rt) == by_day(truth)
    rows = live_rows(rt)
    assert {r.source for r in rows} == {DATA_EXPORT} and not any(r.is_estimate for r in rows)
    assert {r.billing_period for r in rows} == {JAN, FEB}

    again = collect(rt, ("export",))
    assert (again.status, again.metrics_collected, again.requests) == ("success", 0, 1)
    assert len(live_rows(rt)) == lines
    assert reported_by_day(rt) == by_day(truth)


def test_a_changed_manifest_replaces_its_period_whole(runtime, aws, clock, focus):
    truth = seeded_truth(JAN, 59)
    focus.put_parquet(JAN, focus_rows(month(truth, JAN)))
    focus.put_parquet(FEB, focus_rows(month(truth, FEB)))
    rt = runtime(AWS_EXPORT_URI=focus.uri)
    assert collect(rt, ("export",)).status == "success"

    restated = dict(truth)
    feb = sorted(k for k in restated if k[0].month == 2)
    del restated[feb[2]]
    restated[feb[7]] = (restated[feb[7]][0] - Decimal("3.5"), restated[feb[7]][1])
    focus.put_parquet(FEB, focus_rows(month(restated, FEB)), files=3)
    done = collect(rt, ("export",))
    assert done.status == "success", done.error_message
    assert done.requests == 2  # the listing, and February's new manifest only
    expected = by_day_and_service(restated)
    assert {k: v[:2] for k, v in stored(rt).items()} == {k: v[:2] for k, v in expected.items()}
    assert len(live_rows(rt)) == len(focus_rows(restated))


def test_cur2_gzip_csv_maps_as_focus_says(runtime, aws, clock, cur):
    truth = seeded_truth(FEB, 28, seed=11)
    lines, seen = cur_rows(truth)
    cur.put_csv(FEB, lines, files=3)
    rt = runtime(AWS_EXPORT_URI=cur.uri)
    done = collect(rt, ("export",))
    assert done.status == "success", done.error_message
    assert done.metrics_collected == len(lines)
    assert stored(rt) == by_day_and_service(seen)
    rows = live_rows(rt)
    assert {r.charge_category for r in rows} == {"Usage", "Credit", "Tax", "Purchase",
                                                 "Adjustment"}
    assert all(r.is_estimate for r in rows)  # no invoice id yet: provisional
    assert collect(rt, ("export",)).requests == 1
    assert stored(rt) == by_day_and_service(seen)


def test_an_export_month_counts_instead_of_cost_explorer(runtime, aws, clock, focus):
    """Both describe February's spend: its total comes from the export alone."""
    export_truth = seeded_truth(JAN, 59, seed=3)
    focus.put_parquet(JAN, focus_rows(month(export_truth, JAN)))
    focus.put_parquet(FEB, focus_rows(month(export_truth, FEB)))
    ce_truth = seeded_truth(FEB, 37, seed=5)  # Feb 1 .. Mar 9
    aws.inject_ce(ce_pages(ce_truth, estimated=set(ce_truth_days(ce_truth, MAR))))
    rt = runtime(AWS_EXPORT_URI=focus.uri)
    done = collect(rt, ("cost", "export"))
    assert done.status == "success", done.error_message
    assert reported_by_day(rt) == {**by_day(export_truth), **by_day(month(ce_truth, MAR))}
    sources = {r.source for r in live_rows(rt)}
    assert sources == {DATA_EXPORT, COST_EXPLORER}  # both stored, one counted per month


def ce_truth_days(truth, first: date) -> list[date]:
    return sorted({k[0] for k in truth if k[0] >= first})


def test_the_sql_charge_categories_are_the_python_ones(runtime, aws):
    rt = runtime()
    kinds = ["Usage", "DiscountedUsage", "SavingsPlanCoveredUsage", "Credit", "Refund", "Tax",
             "RIFee", "Fee", "SavingsPlanRecurringFee", "SavingsPlanUpfrontFee",
             "SavingsPlanNegation", "BundledDiscount", "EdpDiscount", "Recurring reservation fee"]
    sql = ", ".join(category_sql(f"'{k}'") for k in kinds)
    (row,) = rt.metrics()._rows(f"SELECT {sql}")
    assert list(row) == [charge_category(k) for k in kinds]


def test_a_bad_export_uri_is_a_clear_error(runtime, aws, clock):
    rt = runtime(AWS_EXPORT_URI="s3://billing-exports/nothing/here")
    aws.s3().create_bucket(Bucket="billing-exports")
    done = collect(rt, ("export",))
    assert (done.status, done.error_kind) == ("failed", "config")
    assert "No Data Exports manifest under s3://billing-exports/nothing/here/metadata/" in (
        done.error_message)
    rt2 = runtime()
    undone = collect(rt2, ("export",))
    assert undone.error_kind == "config" and "AWS_EXPORT_URI" in undone.error_message


def test_a_failed_import_leaves_the_period_as_it_was(runtime, aws, clock, cur):
    truth = seeded_truth(FEB, 28, seed=13)
    lines, seen = cur_rows(truth)
    cur.put_csv(FEB, lines, files=2)
    rt = runtime(AWS_EXPORT_URI=cur.uri)
    assert collect(rt, ("export",)).status == "success"
    before = stored(rt)
    assert before == by_day_and_service(seen)

    restated, _ = cur_rows(seeded_truth(FEB, 28, seed=14))
    restated[1]["line_item_unblended_cost"] = "not-a-number"  # in the second file
    cur.put_csv(FEB, restated, files=2)
    done = collect(rt, ("export",))
    assert (done.status, done.error_kind) == ("failed", "data")
    assert "ClickHouse could not read" in done.error_message
    assert aws.secret not in done.error_message
    # The first file's rows were taken back: the period is the last good export's.
    assert stored(rt) == before


def test_the_keys_that_sign_the_reads_stay_out_of_the_metrics_store(runtime, aws, clock, focus):
    focus.put_parquet(FEB, focus_rows(seeded_truth(FEB, 3)))
    rt = runtime(AWS_EXPORT_URI=focus.uri)
    assert collect(rt, ("export",)).status == "success"
    rt.metrics()._command("SYSTEM FLUSH LOGS")
    path = Path(rt.settings.clickhouse_url.removeprefix("chdb://"))
    leaked = [p for p in path.rglob("*") if p.is_file() and aws.secret.encode() in p.read_bytes()]
    assert leaked == []


# --- overwrite mode: every delivery of a month has the same file names -------------------------


def cut_short(n: int, body: bytes) -> bytes:
    """The second file loses its second half (a delivery read while AWS rewrote it)."""
    return body[:len(body) // 2] if n == 1 else body


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_overwrite_mode_a_failed_delivery_keeps_the_month_and_the_next_replaces_it(
        aws, tmp_path, fmt):
    """`collect` then `costs`, as a user runs them: a re-delivery of February that can't be
    read (a value that isn't a number; a file cut short) leaves February as the last good
    delivery left it, to the cent and row for row; the next good one replaces it whole."""
    export = ExportWriter(aws.s3(), "billing-exports", f"cur/overwrite-{fmt}", overwrite=True)
    (tmp_path / "none.toml").write_text("schedules = []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith((
        "AWS_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL", "OPTIINFRA_"))}
    env.update(aws.env, AWS_EXPORT_URI=export.uri, OPTIINFRA_HOME=str(tmp_path / "home"),
               OPTIINFRA_CONFIG=str(tmp_path / "none.toml"), PROVIDER_CHECK_INTERVAL="0",
               RETRY_DELAY="0.05", AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull)

    def deliver(truth, files: int, damage=None) -> int:
        """February's delivery of `truth`; returns its line count."""
        if fmt == "csv":
            lines, _ = cur_rows(truth)
            export.put_csv(FEB, lines, files=files, damage=damage)
        else:
            lines = focus_rows(truth)
            export.put_parquet(FEB, lines, files=files, damage=damage)
        return len(lines)

    def collect_cli() -> dict:
        return json.loads(cli(["collect", "aws", "--types", "export", "--inline", "--json"],
                              env).stdout)

    def costs() -> tuple[dict, int]:
        """(day, currency) -> total, and the rows counted, as `costs --by day --json` says."""
        doc = json.loads(cli(["costs", "--by", "day", "--json"], env).stdout)
        return ({(d["key"], d["currency"]): Decimal(d["total"]) for d in doc},
                sum(d["rows"] for d in doc))

    first = seeded_truth(FEB, 28, seed=21)
    lines = deliver(first, files=3)
    done = collect_cli()
    assert done["status"] == "success", done
    assert costs() == (by_day(first), lines)

    # The same file names again, the second one unreadable: its first file's rows were
    # read before it failed.
    second = seeded_truth(FEB, 28, seed=22)
    if fmt == "csv":
        broken, _ = cur_rows(second)
        broken[1]["line_item_unblended_cost"] = "not-a-number"  # in the second file
        export.put_csv(FEB, broken, files=3)
    else:
        deliver(second, files=3, damage=cut_short)
    listed = aws.s3().list_objects_v2(Bucket=export.bucket, Prefix=f"{export.root}/data/")
    assert len(listed["Contents"]) == 3  # the first delivery's names, overwritten
    failed = collect_cli()
    assert (failed["status"], failed["error_kind"]) == ("failed", "data"), failed
    assert "the period keeps its figures" in failed["error_message"]
    assert f"{export.name}-00002." in failed["error_message"]
    assert aws.secret not in json.dumps(failed)
    assert costs() == (by_day(first), lines)
    # The table a user reads: each currency's total, to the cent.
    shown = {cells[1]: Decimal(cells[4].replace(",", "")) for cells in (
        line.split() for line in cli(["costs"], env).stdout.splitlines()) if cells[:1] == ["aws"]}
    per_currency: dict[str, Decimal] = defaultdict(Decimal)
    for (_, currency), total in by_day(first).items():
        per_currency[currency] += total
    assert shown == {c: t.quantize(CENT, ROUND_HALF_UP) for c, t in per_currency.items()}

    # The next delivery is good: fewer days, fewer files; nothing of the first stays.
    third = seeded_truth(FEB, 20, seed=23)
    lines = deliver(third, files=2)
    done = collect_cli()
    assert done["status"] == "success", done
    assert done["rows"] == lines
    assert costs() == (by_day(third), lines)


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    r = subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.stdout.strip(), r.stderr
    return r
