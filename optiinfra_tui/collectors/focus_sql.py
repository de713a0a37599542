"""Export files read by ClickHouse: the SQL expressions that map an export's columns onto
cost_lines, shared by every provider whose exports are FOCUS-shaped (AWS, Azure).

Python never parses a row: these expressions go into ClickHouse's INSERT ... SELECT.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date

from optiinfra_tui.errors import DataError

_WRAPPERS_RE = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")


def file_format(urls: list[str], where: str) -> str:
    """The ClickHouse input format of the data files (gzip is read by extension)."""
    kinds = {"Parquet" if u.endswith(".parquet") else
             "CSVWithNames" if u.endswith((".csv.gz", ".csv")) else u.rsplit("/", 1)[-1]
             for u in urls}
    if len(kinds) != 1 or not kinds <= {"Parquet", "CSVWithNames"}:
        raise DataError(f"{where}: data files must all be Parquet or (gzip) CSV, not "
                        f"{', '.join(sorted(kinds))}.")
    return kinds.pop()


def line_id_prefix(period: date, delivery: str) -> str:
    """The line ids' prefix for one delivery of an export's billing period (`delivery`: what
    names it, e.g. its run's folder or its manifest's ETag)."""
    # File names can repeat between deliveries (AWS's overwrite mode): with the delivery in
    # the id, taking back a failed import never tombstones the previous delivery's rows.
    return f"x:{period:%Y-%m}:{delivery}"


def described(types: Mapping[str, str]) -> dict[str, str]:
    """Column types as ClickHouse's DESCRIBE gives them ('Nullable(Decimal(38, 10))'), in the
    manifest-like form `Columns` reads ('decimal(38, 10)')."""
    out = {}
    for name, kind in types.items():
        while (inner := _WRAPPERS_RE.match(kind)) is not None:
            kind = inner[1]
        out[name] = kind.lower()
    return out


class Columns:
    """Expressions that read one export's columns into cost_lines' types (a CSV is all text;
    a Parquet file keeps its types, as the manifest or ClickHouse declares them)."""

    def __init__(self, columns: Mapping[str, str], fmt: str) -> None:
        self.columns, self.text = dict(columns), fmt != "Parquet"

    def has(self, name: str) -> bool:
        return name in self.columns

    def first(self, *names: str) -> str | None:
        return next((n for n in names if n in self.columns), None)

    @staticmethod
    def q(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def str(self, name: str | None) -> str:
        return f"ifNull(toString({self.q(name)}), '')" if name and self.has(name) else "''"

    def dec(self, name: str | None, scale: int = 6) -> str:
        """Rounded half-even to the column's scale, as Python's writes."""
        if not name or not self.has(name):
            return f"toDecimal64(0, {scale})"
        exact = (f"ifNull({self.q(name)}, 0)" if self._typed(name, "decimal")
                 else self.num(name))
        return f"toDecimal64(roundBankers({exact}, {scale}), {scale})"

    def num(self, name: str | None) -> str:
        """A money column for arithmetic, to 12 places: text (a CSV's, or a string column) is
        read exactly; a Parquet number is converted by value, rounded at 12 places (four times
        faster than through its text, and the same to 6 places below a million)."""
        if not name or not self.has(name):
            return "toDecimal128(0, 12)"
        if self.text or self._typed(name, "string", "varchar"):
            return f"toDecimal128(ifNull(nullIf(toString({self.q(name)}), ''), '0'), 12)"
        return f"toDecimal128(ifNull({self.q(name)}, 0), 12)"

    def _typed(self, name: str, *kinds: str) -> bool:
        return not self.text and self.columns[name].startswith(kinds)

    def ts(self, name: str | None, fallback: str) -> str:
        if not name or not self.has(name):
            return fallback
        col = self.q(name)
        if self.text or self.columns[name] in ("string", "varchar"):
            return (f"ifNull(parseDateTime64BestEffortOrNull(toString({col}), 6, 'UTC'), "
                    f"{fallback})")
        return f"ifNull(toDateTime64({col}, 6, 'UTC'), {fallback})"


def focus_mapping(c: Columns, period: date, current: date) -> dict[str, str]:
    """cost_lines column -> expression for a FOCUS export (one to one); the caller checked
    that it is one (it has BilledCost)."""
    start = f"toDateTime64('{period.isoformat()} 00:00:00', 6, 'UTC')"
    if c.has("InvoiceId"):
        estimate = f"{c.str('InvoiceId')} = ''"
    else:  # FOCUS 1.0 names no invoice: a month is provisional until it is over
        estimate = "true" if period >= current else "false"
    charge_start = c.ts("ChargePeriodStart", start)
    return {
        "billing_account_id": c.str("BillingAccountId"), "invoice_id": c.str("InvoiceId"),
        "billed_cost": c.dec("BilledCost"), "effective_cost": c.dec("EffectiveCost"),
        "list_cost": c.dec("ListCost"), "list_unit_price": c.dec("ListUnitPrice", 8),
        "billing_currency": c.str("BillingCurrency"),
        "charge_period_start": charge_start,
        "charge_period_end": c.ts("ChargePeriodEnd", charge_start),
        "charge_category": c.str("ChargeCategory"),
        "charge_description": c.str("ChargeDescription"),
        "service_name": c.str("ServiceName"), "resource_id": c.str("ResourceId"),
        "resource_name": c.str("ResourceName"), "region_id": c.str(c.first("RegionId",
                                                                           "Region")),
        "pricing_quantity": c.dec("PricingQuantity"), "pricing_unit": c.str("PricingUnit"),
        "is_estimate": estimate,
    }
