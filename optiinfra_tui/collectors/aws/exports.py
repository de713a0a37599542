"""AWS Data Exports (FOCUS 1.0 or CUR 2.0) in S3: ClickHouse reads the files, Python reads only
the manifests.

An export delivers, per billing period, data files and a manifest at
<export>/metadata/BILLING_PERIOD=YYYY-MM/[...]<name>-Manifest.json. Each run lists the
manifests, and for each period whose newest manifest changed (by ETag) since it was last read,
has ClickHouse insert the period's files and replace the period whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date

from optiinfra_tui.collectors.aws import PROVIDER
from optiinfra_tui.collectors.aws.cost_explorer import CATEGORY_RULES
from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.collectors.focus_sql import (
    Columns,
    file_format,
    focus_mapping,
    line_id_prefix,
)
from optiinfra_tui.errors import ConfigError, DataError
from optiinfra_tui.rows import DATA_EXPORT, IMPORT_FILES, REPLACE_WINDOW, Batch, FileImport, Window

MANIFEST = "export:manifest:"  # state key prefix: + YYYY-MM -> the ETag of the manifest read
_PERIOD_RE = re.compile(r"BILLING_PERIOD=(\d{4})-(\d{2})")
_S3_RE = re.compile(r"^s3://([^/]+)/(.+)$")
MAX_MANIFEST_BYTES = 50_000_000


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix/export-name -> (bucket, 'prefix/export-name')."""
    found = _S3_RE.match(uri.rstrip("/"))
    if not found:
        raise ConfigError(f"export_uri {uri!r} is not s3://bucket/prefix/export-name.")
    return found[1], found[2]


def newest_manifests(s3, bucket: str, root: str) -> dict[date, tuple[str, str]]:
    """Billing period -> (key, ETag) of its newest manifest."""
    newest: dict[date, tuple[object, str, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                             Prefix=f"{root}/metadata/"):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            period = _PERIOD_RE.search(key)
            if not key.endswith("Manifest.json") or not period:
                continue
            month = date(int(period[1]), int(period[2]), 1)
            seen = newest.get(month)
            if seen is None or (obj["LastModified"], key) > (seen[0], seen[1]):
                newest[month] = (obj["LastModified"], key, obj["ETag"].strip('"'))
    return {m: (key, etag) for m, (_, key, etag) in newest.items()}


def read_manifest(s3, bucket: str, key: str) -> tuple[list[str], dict[str, str]]:
    """(data files as s3:// URIs, column name -> declared type) of one manifest."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        raw = body.read(MAX_MANIFEST_BYTES + 1)
    finally:
        body.close()
    where = f"s3://{bucket}/{key}"
    try:
        doc = json.loads(raw) if len(raw) <= MAX_MANIFEST_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise DataError(f"{where} is not a Data Exports manifest (JSON object expected).")
    files, columns = doc.get("dataFiles"), doc.get("columns")
    if not isinstance(files, list) or not all(isinstance(f, str) and f.startswith("s3://")
                                              for f in files):
        raise DataError(f"{where}: dataFiles must be a list of s3:// URIs.")
    if not isinstance(columns, list) or not all(isinstance(c, dict) and c.get("name")
                                                for c in columns):
        raise DataError(f"{where}: columns must list the export's columns by name.")
    return files, {str(c["name"]): str(c.get("type", "")).lower() for c in columns}


def category_sql(expr: str) -> str:
    """cost_explorer.charge_category in SQL, from the same rules."""
    key = f"lower(replaceAll(replaceAll({expr}, ' ', ''), '_', ''))"
    (usage, suffix), (credit, names), (tax, tax_names), (purchase, words) = CATEGORY_RULES
    return (f"multiIf(endsWith({key}, '{suffix}'), '{usage}', "
            f"{key} IN ({', '.join(repr(n) for n in names)}), '{credit}', "
            f"{key} IN ({', '.join(repr(n) for n in tax_names)}), '{tax}', "
            f"{' OR '.join(f'position({key}, {w!r}) > 0' for w in words)}, '{purchase}', "
            f"'Adjustment')")


def mapping(columns: dict[str, str], fmt: str, period: date, current: date,
            where: str) -> dict[str, str]:
    """cost_lines column -> expression, for a FOCUS 1.0 or a CUR 2.0 export."""
    c = Columns(columns, fmt)
    start = f"toDateTime64('{period.isoformat()} 00:00:00', 6, 'UTC')"
    if c.has("BilledCost"):  # FOCUS: one to one
        return focus_mapping(c, period, current)
    if c.has("line_item_unblended_cost"):  # CUR 2.0, as FOCUS's own CUR mapping says
        kind = c.str("line_item_line_item_type")
        unblended = c.num("line_item_unblended_cost")
        effective = (
            f"multiIf({kind} = 'SavingsPlanCoveredUsage', "
            f"{c.num('savings_plan_savings_plan_effective_cost')}, "
            f"{kind} = 'SavingsPlanRecurringFee', "
            f"{c.num('savings_plan_total_commitment_to_date')} - "
            f"{c.num('savings_plan_used_commitment')}, "
            f"{kind} IN ('SavingsPlanNegation', 'SavingsPlanUpfrontFee'), toDecimal128(0, 12), "
            f"{kind} = 'DiscountedUsage', {c.num('reservation_effective_cost')}, "
            f"{kind} = 'RIFee', "
            f"{c.num('reservation_unused_amortized_upfront_fee_for_billing_period')} + "
            f"{c.num('reservation_unused_recurring_fee')}, "
            f"{kind} = 'Fee' AND {c.str('reservation_reservation_a_r_n')} != '', "
            f"toDecimal128(0, 12), {unblended})")
        charge_start = c.ts("line_item_usage_start_date", start)
        return {
            "billing_account_id": c.str("bill_payer_account_id"),
            "invoice_id": c.str("bill_invoice_id"),
            "billed_cost": c.dec("line_item_unblended_cost"),
            "effective_cost": f"toDecimal64(roundBankers({effective}, 6), 6)",
            "list_cost": c.dec("pricing_public_on_demand_cost"),
            "list_unit_price": c.dec("pricing_public_on_demand_rate", 8),
            "billing_currency": c.str("line_item_currency_code"),
            "charge_period_start": charge_start,
            "charge_period_end": c.ts("line_item_usage_end_date", charge_start),
            "charge_category": category_sql(kind),
            "charge_description": c.str("line_item_line_item_description"),
            "service_name": c.str(c.first("product_servicename", "product_product_name",
                                          "line_item_product_code")),
            "resource_id": c.str("line_item_resource_id"),
            "resource_name": "''",
            "region_id": c.str(c.first("product_region_code", "product_region")),
            "pricing_quantity": c.dec("line_item_usage_amount"),
            "pricing_unit": c.str("pricing_unit"),
            "is_estimate": f"{c.str('bill_invoice_id')} = ''",
        }
    raise DataError(f"{where}: neither a FOCUS export (BilledCost) nor CUR 2.0 "
                    "(line_item_unblended_cost): its columns can't be mapped.")


# --- the walk ---------------------------------------------------------------------------------


def collect(s3, ctx: CollectContext, export_uri: str, credentials: tuple[str, str, str],
            current: date, translate) -> Iterator[Batch]:
    """For each billing period whose newest manifest changed: its files as one import, then
    the period as a replacement (remembering the manifest's ETag)."""
    bucket, root = split_uri(export_uri)
    try:
        manifests = newest_manifests(s3, bucket, root)
    except Exception as exc:
        raise translate(exc, f"S3 ListObjectsV2 on s3://{bucket}/{root}/metadata/",
                        f"s3:ListBucket on arn:aws:s3:::{bucket}") from None
    if not manifests:
        raise ConfigError(f"No Data Exports manifest under s3://{bucket}/{root}/metadata/. "
                          "Check that export_uri names the export (s3://bucket/prefix/"
                          "export-name) and that it has delivered once (up to 24 hours after "
                          "it was created).")
    for period in sorted(manifests):
        key, etag = manifests[period]
        state_key = f"{MANIFEST}{period:%Y-%m}"
        if ctx.state.get(state_key) == etag:
            continue  # the period as stored is this manifest's
        where = f"s3://{bucket}/{key}"
        try:
            files, columns = read_manifest(s3, bucket, key)
        except DataError:
            raise
        except Exception as exc:
            raise translate(exc, f"S3 GetObject {where}",
                            f"s3:GetObject on arn:aws:s3:::{bucket}/{root}/*") from None
        if files:
            urls = [object_url(s3, f) for f in files]
            fmt = file_format(urls, where)
            yield Batch(IMPORT_FILES, [FileImport(
                ctx.customer_id, PROVIDER, DATA_EXPORT, period, tuple(urls), fmt,
                # The manifest's ETag names the delivery: in overwrite mode each one writes
                # the same file names.
                mapping(columns, fmt, period, current, where), line_id_prefix(period, etag),
                ctx.run_id, ctx.collected_at, credentials)])
        yield Batch(REPLACE_WINDOW, [Window(ctx.customer_id, PROVIDER, DATA_EXPORT, (period,),
                                            ctx.collected_at, {state_key: etag})])


def object_url(s3, uri: str) -> str:
    """The http(s) URL of an s3:// object on the client's endpoint (no request is made)."""
    found = _S3_RE.match(uri)
    if not found:
        raise DataError(f"{uri!r} is not an s3:// URI.")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": found[1], "Key": found[2]},
                                    ExpiresIn=3600)
    return url.split("?", 1)[0]
