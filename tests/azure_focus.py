"""Cost Management FOCUS exports for the tests: seeded line items, and the runs written into the
Azure double's storage account as Cost Management lays them out (partitioned files beside a
manifest.json in Microsoft's documented shape)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from fake_azure_blob import BlobService

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
SERVICES = ("Virtual Machines", "Storage", "Azure App Service", "Bandwidth")
# The columns Cost Management's FOCUS 1.0 dataset writes that collect reads, with a few it
# doesn't (Tags: JSON with commas and quotes, which CSV quoting must carry).
COLUMNS = ("AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName",
           "BillingAccountType", "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart",
           "ChargeCategory", "ChargeClass", "ChargeDescription", "ChargeFrequency",
           "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit",
           "ContractedCost", "EffectiveCost", "ListCost", "ListUnitPrice", "PricingQuantity",
           "PricingUnit", "ProviderName", "RegionId", "RegionName", "ResourceId",
           "ResourceName", "ServiceCategory", "ServiceName", "SubAccountId", "Tags",
           "x_BillingExchangeRate", "x_ResourceGroupName")
MONEY = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")

Line = dict[str, object]


def _end(period: date) -> date:
    return (period.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def seeded_lines(first: date, last: date, seed: int = 3) -> list[Line]:
    """Line items from `first` to `last`: each service one to three lines a day, amounts with
    up to six decimals; a reservation purchase (more digits than a float keeps), a credit and a
    tax on some days; one service billed in EUR (another billing profile)."""
    rnd = random.Random(seed)

    def amount(low: int, high: int) -> Decimal:
        return Decimal(rnd.randint(low, high)).scaleb(-6)

    lines: list[Line] = []
    day = first
    while day <= last:
        for service in SERVICES:
            for n in range(rnd.randint(1, 3)):
                billed = amount(1, 90_000_000)
                lines.append(_line(day, service, "Usage", "USD", billed, billed, n))
        if day.day % 4 == 0:
            cosmos = amount(1_000, 5_000_000)
            lines.append(_line(day, "Azure Cosmos DB", "Usage", "EUR", cosmos, cosmos, 0))
        if day.day == 1:
            lines.append(_line(day, "Virtual Machines", "Purchase", "USD",
                               Decimal("98765432109.876543"), Decimal(0), 9))
            lines.append(_line(day, "Tax", "Tax", "USD", amount(100_000, 900_000),
                               Decimal(0), 0))
        if day.day in (5, 20):
            refund = -amount(1_000_000, 40_000_000)
            lines.append(_line(day, "Azure App Service", "Credit", "USD", refund, refund, 0))
        day += timedelta(days=1)
    return lines


def _line(day: date, service: str, category: str, currency: str, billed: Decimal,
          effective: Decimal, n: int) -> Line:
    period = day.replace(day=1)
    group = "rg-prod" if n % 2 == 0 else "rg-data"
    resource = (f"/subscriptions/{SUBSCRIPTION}/resourcegroups/{group}/providers/"
                f"microsoft.compute/virtualmachines/vm-{service[:3].lower()}-{n}")
    return {
        "AvailabilityZone": "", "BilledCost": billed,
        "BillingAccountId": "/providers/Microsoft.Billing/billingAccounts/1234567",
        "BillingAccountName": "Contoso", "BillingAccountType": "Billing Profile",
        "BillingCurrency": currency, "BillingPeriodStart": datetime(period.year, period.month, 1),
        "BillingPeriodEnd": datetime.combine(_end(period) + timedelta(days=1), datetime.min.time()),
        "ChargeCategory": category, "ChargeClass": "", "ChargeFrequency": "Usage-Based",
        "ChargeDescription": f'{service} – D2s v3, "{group}", line {n}',
        "ChargePeriodStart": datetime(day.year, day.month, day.day),
        "ChargePeriodEnd": datetime(day.year, day.month, day.day) + timedelta(days=1),
        "ConsumedQuantity": Decimal("24"), "ConsumedUnit": "Hours",
        "ContractedCost": billed, "EffectiveCost": effective, "ListCost": billed,
        "ListUnitPrice": Decimal("0.096"), "PricingQuantity": Decimal("24"),
        "PricingUnit": "1 Hour", "ProviderName": "Microsoft", "RegionId": "westeurope",
        "RegionName": "West Europe", "ResourceId": resource, "ResourceName": f"vm-{n}",
        "ServiceCategory": "Compute", "ServiceName": service, "SubAccountId":
            f"/subscriptions/{SUBSCRIPTION}",
        "Tags": json.dumps({"env": "prod", "team": "fin,ops", "note": 'say "hi"'}),
        "x_BillingExchangeRate": "1", "x_ResourceGroupName": group,
    }


def month(lines: list[Line], period: date) -> list[Line]:
    return [x for x in lines if x["ChargePeriodStart"].date().replace(day=1) == period]


def totals(lines: list[Line], key: str) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
    """(day or service, currency) -> (billed, effective): what the files hold, exactly."""
    out: dict = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for x in lines:
        k = (x["ChargePeriodStart"].date().isoformat() if key == "day" else x["ServiceName"],
             x["BillingCurrency"])
        out[k][0] += x["BilledCost"]
        out[k][1] += x["EffectiveCost"]
    return {k: tuple(v) for k, v in out.items()}


class FocusExport:
    """One export (`Cost and usage details (FOCUS)`) writing into the double's storage account,
    in <container>/<folder>/<name>/<YYYYMMDD-YYYYMMDD>/<YYYYMMDDHHMM>/<run id>/."""

    def __init__(self, blob: BlobService, container: str = "cost-exports",
                 folder: str = "focus", name: str = "daily-focus") -> None:
        self.blob, self.container = blob, container
        self.root = f"{folder}/{name}"
        self.name = name
        self.runs = 0
        blob.containers.setdefault(container, {})

    @property
    def uri(self) -> str:
        return f"{self.blob.url}/{self.container}/{self.root}"

    def put_run(self, period: date, lines: list[Line], files: int = 2, fmt: str = "csv",
                kind: str = "FocusCost", rows: int | None = None,
                mangle=None) -> list[str]:
        """Write one run for `period`: `files` partitions, then the manifest (as Cost
        Management does, last). `rows` overrides the manifest's row count; `mangle(text)`
        changes a CSV partition's text before it is written. Returns the blob names."""
        self.runs += 1
        run_id = str(uuid.uuid4())
        submitted = datetime(2026, 3, 15, 5, self.runs % 60, tzinfo=UTC)
        folder = (f"{self.root}/{period:%Y%m%d}-{_end(period):%Y%m%d}/"
                  f"{submitted:%Y%m%d%H%M}/{run_id}")
        blobs = []
        for n in range(files):
            part = lines[n::files]
            if fmt == "parquet":
                name, data = f"{folder}/part_{n}_0001.snappy.parquet", _parquet(part)
            else:
                text = _csv(part)
                name, data = f"{folder}/part_{n}_0001.csv.gz", gzip.compress(
                    (mangle(text) if mangle else text).encode())
            self.blob.put(self.container, name, data)
            blobs.append({"blobName": name, "byteCount": len(data), "dataRowCount": len(part)})
        manifest = {
            "manifestVersion": "2024-04-01",
            "byteCount": sum(b["byteCount"] for b in blobs), "blobCount": len(blobs),
            "dataRowCount": len(lines) if rows is None else rows,
            "exportConfig": {
                "exportName": self.name,
                "resourceId": f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft."
                              f"CostManagement/exports/{self.name}",
                "dataVersion": "1.0r2", "apiVersion": "2023-07-01-preview", "type": kind,
                "timeFrame": "MonthToDate", "granularity": "Daily"},
            "deliveryConfig": {
                "partitionData": True, "dataOverwriteBehavior": "CreateNewReport",
                "fileFormat": "Parquet" if fmt == "parquet" else "Csv",
                "compressionMode": "Snappy" if fmt == "parquet" else "Gzip",
                "containerUri": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/billing/providers/"
                                f"Microsoft.Storage/storageAccounts/{self.blob.account}",
                "rootFolderPath": self.root.rsplit("/", 1)[0]},
            "runInfo": {
                "executionType": "Scheduled",
                "submittedTime": submitted.isoformat().replace("+00:00", "Z"),
                "runId": run_id, "startDate": f"{period.isoformat()}T00:00:00",
                "endDate": f"{_end(period).isoformat()}T00:00:00Z"},
            "blobs": blobs,
        }
        self.blob.put(self.container, f"{folder}/manifest.json",
                      json.dumps(manifest, indent=2).encode(), "application/json")
        return [b["blobName"] for b in blobs] + [f"{folder}/manifest.json"]


def _text(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _csv(lines: list[Line]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for x in lines:
        writer.writerow([_text(x[c]) for c in COLUMNS])
    return out.getvalue()


def _parquet(lines: list[Line]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def kind(column: str):
        if column in MONEY:
            return pa.decimal128(38, 18)
        if column in ("ConsumedQuantity", "PricingQuantity", "ListUnitPrice"):
            return pa.float64()
        if column.startswith(("ChargePeriod", "BillingPeriod")):
            return pa.timestamp("us", tz="UTC")
        return pa.string()

    def value(column: str, v: object):
        if kind(column) == pa.float64():
            return float(v)
        if isinstance(v, datetime):
            return v.replace(tzinfo=UTC)
        return v

    table = pa.table({c: pa.array([value(c, x[c]) for x in lines], kind(c)) for c in COLUMNS})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()
