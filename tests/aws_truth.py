"""Seeded truths of AWS spend, and Cost Explorer answers paged out of them."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial

SERVICES = ("Amazon Elastic Compute Cloud - Compute", "Amazon Simple Storage Service",
            "AWS Lambda", "Amazon Relational Database Service")
RECORD_TYPES = ("Usage", "Credit", "Tax", "Recurring reservation fee", "DiscountedUsage",
                "Savings Plan Negation")

# (day, service, record type, currency) -> (unblended, amortized)
Truth = dict[tuple[date, str, str, str], tuple[Decimal, Decimal]]


def seeded_truth(first: date, days: int, seed: int = 7) -> Truth:
    """Spend on `days` days from `first`: several services and record types a day, amounts
    with up to 6 decimals, credits negative; one day also has a charge in EUR."""
    rnd = random.Random(seed)
    truth: Truth = {}
    for n in range(days):
        day = first + timedelta(days=n)
        for service in SERVICES:
            for record_type in rnd.sample(RECORD_TYPES, 3):
                amount = Decimal(rnd.randrange(1, 5_000_000_000)).scaleb(-6)
                if record_type == "Credit":
                    amount = -amount
                amortized = amount if record_type != "Recurring reservation fee" else Decimal(0)
                truth[(day, service, record_type, "USD")] = (amount, amortized)
    truth[(first, "AWS Marketplace", "Usage", "EUR")] = (Decimal("12.345678"),
                                                        Decimal("12.345678"))
    return truth


def ce_pages(truth: Truth, estimated: set[date] | None = None, groups_per_page: int = 25,
             tag: str = "p") -> list[dict]:
    """GetCostAndUsage answers for `truth`, a day's groups split across pages where a page
    fills up (as Cost Explorer pages); days in `estimated` are marked Estimated."""
    estimated = estimated or set()
    by_day: dict[date, list] = defaultdict(list)
    for (day, service, record_type, currency), (unblended, amortized) in sorted(truth.items()):
        by_day[day].append({"Keys": [service, record_type], "Metrics": {
            "UnblendedCost": {"Amount": str(unblended), "Unit": currency},
            "AmortizedCost": {"Amount": str(amortized), "Unit": currency}}})
    pages: list[list[dict]] = [[]]
    room = groups_per_page
    for day in sorted(by_day):
        groups = by_day[day]
        while groups:
            if room == 0:
                pages.append([])
                room = groups_per_page
            take, groups = groups[:room], groups[room:]
            room -= len(take)
            pages[-1].append({"TimePeriod": {"Start": day.isoformat(),
                                             "End": (day + timedelta(days=1)).isoformat()},
                              "Total": {}, "Groups": take, "Estimated": day in estimated})
    answers = []
    for i, results in enumerate(pages):
        answer = {"ResultsByTime": results, "DimensionValueAttributes": [],
                  "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"},
                                       {"Type": "DIMENSION", "Key": "RECORD_TYPE"}]}
        if i < len(pages) - 1:
            answer["NextPageToken"] = f"{tag}-{i + 1}"
        answers.append(answer)
    return answers


def totals(truth: Truth, key) -> dict:
    """Sums of billed (unblended) and effective (amortized) cost by key(day, service, currency)."""
    out: dict = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    for (day, service, _record, currency), (unblended, amortized) in truth.items():
        k = key(day, service, currency)
        out[k][0] += unblended
        out[k][1] += amortized
        out[k][2] += 1
    return {k: tuple(v) for k, v in out.items()}


# --- Data Exports in S3 -----------------------------------------------------------------------

Damage = Callable[[int, bytes], bytes]  # (file index, its bytes) -> the bytes stored

FOCUS_COLUMNS = {  # name -> manifest type
    "BillingAccountId": "string", "BilledCost": "decimal", "EffectiveCost": "decimal",
    "ListCost": "double", "ListUnitPrice": "double", "BillingCurrency": "string",
    "ChargePeriodStart": "timestamp", "ChargePeriodEnd": "timestamp",
    "ChargeCategory": "string", "ChargeDescription": "string", "ServiceName": "string",
    "ResourceId": "string", "ResourceName": "string", "RegionId": "string",
    "PricingQuantity": "double", "PricingUnit": "string",
}
CUR_TYPES = {"Usage": "Usage", "Credit": "Credit", "Tax": "Tax",
             "Recurring reservation fee": "RIFee", "DiscountedUsage": "DiscountedUsage",
             "Savings Plan Negation": "SavingsPlanNegation"}


def focus_rows(truth: Truth) -> list[dict]:
    """One FOCUS line per truth entry, and each Usage entry split in two lines."""
    rows = []
    for (day, service, record_type, currency), (billed, effective) in sorted(truth.items()):
        parts = [(billed, effective)]
        if record_type == "Usage":
            half = (billed / 3).quantize(Decimal("0.000001"))
            parts = [(half, half), (billed - half, effective - half)]
        for i, (b, e) in enumerate(parts):
            rows.append({
                "BillingAccountId": "111122223333", "BilledCost": b, "EffectiveCost": e,
                "ListCost": float(b), "ListUnitPrice": 0.0123, "BillingCurrency": currency,
                "ChargePeriodStart": datetime(day.year, day.month, day.day, i),
                "ChargePeriodEnd": datetime(day.year, day.month, day.day, i + 1),
                "ChargeCategory": "Usage", "ChargeDescription": f"{service} {record_type}",
                "ServiceName": service, "ResourceId": f"i-{i}", "ResourceName": "",
                "RegionId": "us-east-1", "PricingQuantity": 1.5, "PricingUnit": "Hours"})
    return rows


def cur_rows(truth: Truth) -> tuple[list[dict], Truth]:
    """CUR 2.0 lines for `truth`, and the truth as FOCUS's CUR mapping sees it (a Savings Plan
    negation has no effective cost)."""
    rows, seen = [], {}
    for (day, service, record_type, currency), (billed, effective) in sorted(truth.items()):
        kind = CUR_TYPES[record_type]
        if kind == "SavingsPlanNegation":
            effective = Decimal(0)
        seen[(day, service, record_type, currency)] = (billed, effective)
        half = (effective / 2).quantize(Decimal("0.000001"))
        rows.append({
            "bill_payer_account_id": "111122223333", "bill_invoice_id": "",
            "line_item_line_item_type": kind,
            "line_item_usage_start_date": f"{day.isoformat()}T00:00:00Z",
            "line_item_usage_end_date": f"{(day + timedelta(days=1)).isoformat()}T00:00:00Z",
            "line_item_unblended_cost": str(billed), "line_item_currency_code": currency,
            "line_item_line_item_description": f"{service} {record_type}",
            "line_item_product_code": service.split()[-1], "product_servicename": service,
            "line_item_resource_id": "", "product_region_code": "us-east-1",
            "line_item_usage_amount": "2", "pricing_unit": "Hrs",
            "pricing_public_on_demand_cost": str(billed), "pricing_public_on_demand_rate": "0.1",
            "reservation_effective_cost": str(effective) if kind == "DiscountedUsage" else "",
            "reservation_unused_amortized_upfront_fee_for_billing_period":
                str(half) if kind == "RIFee" else "",
            "reservation_unused_recurring_fee": str(effective - half) if kind == "RIFee" else "",
            "reservation_reservation_a_r_n": "",
            "savings_plan_savings_plan_effective_cost": "",
            "savings_plan_total_commitment_to_date": "", "savings_plan_used_commitment": "",
        })
    return rows, seen


class ExportWriter:
    """Writes a Data Export into S3 as AWS lays it out: data files and a manifest per period.

    Each delivery's files have names of their own, unless `overwrite` (AWS's "overwrite" mode):
    then every delivery of a period writes the same names again, its manifest included.
    """

    def __init__(self, s3, bucket: str, root: str, overwrite: bool = False) -> None:
        self.s3, self.bucket, self.root, self.overwrite = s3, bucket, root, overwrite
        self.name = root.rsplit("/", 1)[-1]
        self.executions = 0
        try:
            s3.create_bucket(Bucket=bucket)
        except Exception as exc:  # a second export in the same bucket
            if "BucketAlready" not in type(exc).__name__ + str(exc):
                raise

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.root}"

    def put_parquet(self, period: date, rows: list[dict], files: int = 2,
                    damage: Damage | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        types = {"decimal": pa.decimal128(38, 10), "double": pa.float64(),
                 "timestamp": pa.timestamp("us", tz="UTC"), "string": pa.string()}
        keys = []
        for n in range(files):
            part = rows[n::files]
            table = pa.table({c: pa.array([r[c] for r in part], types[t])
                              for c, t in FOCUS_COLUMNS.items()})
            sink = io.BytesIO()
            pq.write_table(table, sink)
            keys.append(self._put_data(period, f"{n + 1:05d}.snappy.parquet", sink.getvalue(),
                                       damage and partial(damage, n)))
        self._manifest(period, keys, FOCUS_COLUMNS)

    def put_csv(self, period: date, rows: list[dict], files: int = 2,
                damage: Damage | None = None) -> None:
        columns = list(rows[0])
        keys = []
        for n in range(files):
            text = io.StringIO()
            writer = csv.DictWriter(text, columns)
            writer.writeheader()
            writer.writerows(rows[n::files])
            keys.append(self._put_data(period, f"{n + 1:05d}.csv.gz",
                                       gzip.compress(text.getvalue().encode()),
                                       damage and partial(damage, n)))
        self._manifest(period, keys, {c: "string" for c in columns})

    def _put_data(self, period: date, suffix: str, body: bytes,
                  damage: Callable[[bytes], bytes] | None) -> str:
        delivery = "" if self.overwrite else f"{self.executions}-"
        key = f"{self.root}/data/BILLING_PERIOD={period:%Y-%m}/{self.name}-{delivery}{suffix}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=damage(body) if damage else body)
        return f"s3://{self.bucket}/{key}"

    def _manifest(self, period: date, files: list[str], columns: dict[str, str]) -> None:
        self.executions += 1
        doc = {"executionId": f"exec-{self.executions}",
               "exportArn": f"arn:aws:bcm-data-exports:us-east-1:111122223333:export/{self.name}",
               "billingPeriod": {"start": f"{period.isoformat()}T00:00:00.000Z"},
               "columns": [{"name": c, "type": t} for c, t in columns.items()],
               "dataFiles": files}
        self.s3.put_object(
            Bucket=self.bucket, Body=json.dumps(doc).encode(),
            Key=f"{self.root}/metadata/BILLING_PERIOD={period:%Y-%m}/{self.name}-Manifest.json")
