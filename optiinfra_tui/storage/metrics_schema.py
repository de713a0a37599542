"""ClickHouse tables for the collected rows, and the conversion of rows into insert columns.

Each table's columns are its dataclass's fields, in order, so a row reads back as the same
dataclass. Money is Decimal(18, 6) (unit prices Decimal(18, 8)); every timestamp is UTC.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import repeat
from operator import attrgetter, is_

from optiinfra_tui.rows import (
    ACCOUNT_SNAPSHOTS,
    COST_LINES,
    LEDGER,
    RESOURCES,
    AccountSnapshot,
    CostRow,
    LedgerEntry,
    ResourceRow,
)

COMPLETE_INVOICES = "complete_invoices"
COLLECTOR_STATE = "collector_state"
SCHEMA_VERSIONS = "schema_version"

_S = "String"
_LC = "LowCardinality(String)"
_D6 = "Decimal(18, 6)"
_D8 = "Decimal(18, 8)"
_TS = "DateTime64(6, 'UTC')"
_TS_NULL = "Nullable(DateTime64(6, 'UTC'))"


@dataclasses.dataclass(frozen=True)
class InvoiceMark:
    """An invoice whose lines were all written: the next run can skip it."""

    customer_id: str
    provider_name: str
    invoice_id: str
    completed_at: datetime


@dataclasses.dataclass(frozen=True)
class StateEntry:
    """What a collector asked to remember for its next runs (rows.Window.state)."""

    customer_id: str
    provider_name: str
    key: str
    value: str
    updated_at: datetime


@dataclasses.dataclass(frozen=True)
class SchemaVersion:
    """A schema step applied to this store (see MIGRATIONS)."""

    version: int
    applied_at: datetime


@dataclasses.dataclass(frozen=True)
class Table:
    name: str
    row_type: type
    types: dict[str, str]  # field -> ClickHouse type, in the dataclass's field order
    engine: str
    extra: str = ""  # columns that are not fields (the tombstone flag)

    @property
    def columns(self) -> list[str]:
        return list(self.types)

    def ddl(self, database: str) -> str:
        cols = ",\n    ".join(f"{name} {ch_type}" for name, ch_type in self.types.items())
        extra = f",\n    {self.extra}" if self.extra else ""
        return (f"CREATE TABLE IF NOT EXISTS {database}.{self.name} (\n    {cols}{extra}\n) "
                f"ENGINE = {self.engine}")


def _table(name: str, row_type: type, types: dict[str, str], engine: str, extra: str = "") -> Table:
    fields = [f.name for f in dataclasses.fields(row_type)]
    if fields != list(types):
        raise RuntimeError(f"{name}: columns {list(types)} don't match {row_type.__name__} {fields}")
    return Table(name, row_type, types, engine, extra)


TABLES: dict[str, Table] = {t.name: t for t in (
    _table(COST_LINES, CostRow, {
        "line_id": _S, "customer_id": _LC, "provider_name": _LC, "billing_account_id": _S,
        "invoice_id": _S, "billed_cost": _D6, "effective_cost": _D6, "list_cost": _D6,
        "list_unit_price": _D8, "billing_currency": _LC, "charge_period_start": _TS,
        "charge_period_end": _TS, "billing_period": "Date", "charge_category": _LC,
        "charge_description": _S, "service_name": _LC, "resource_id": _S, "resource_name": _S,
        "region_id": _LC, "pricing_quantity": _D6, "pricing_unit": _LC, "is_estimate": "Bool",
        "run_id": "Int64", "collected_at": _TS, "source": _LC,
    }, "ReplacingMergeTree(collected_at, is_deleted) "
       "ORDER BY (customer_id, provider_name, line_id)",
        extra="is_deleted UInt8 DEFAULT 0"),
    # Replacing, keyed by the snapshot's time, so writing the same snapshot twice keeps one.
    _table(ACCOUNT_SNAPSHOTS, AccountSnapshot, {
        "customer_id": _LC, "provider_name": _LC, "balance": _D6, "pending_charges": _D6,
        "last_payment_date": _TS_NULL, "last_payment_amount": _D6, "run_id": "Int64",
        "collected_at": _TS,
    }, "ReplacingMergeTree ORDER BY (customer_id, provider_name, collected_at)"),
    _table(LEDGER, LedgerEntry, {
        "line_id": _S, "customer_id": _LC, "provider_name": _LC, "entry_id": _S,
        "entry_date": _TS, "entry_type": _LC, "description": _S, "amount": _D6, "balance": _D6,
        "run_id": "Int64", "collected_at": _TS,
    }, "ReplacingMergeTree(collected_at) ORDER BY (customer_id, provider_name, line_id)"),
    _table(RESOURCES, ResourceRow, {
        "customer_id": _LC, "provider_name": _LC, "resource_id": _S, "resource_name": _S,
        "resource_type": _LC, "region_id": _LC, "status": _LC, "plan": _LC,
        "vcpu_count": "Int32", "ram_mb": "Int64", "disk_gb": "Int64", "created_at": _TS_NULL,
        "run_id": "Int64", "collected_at": _TS,
    }, "ReplacingMergeTree(collected_at) ORDER BY (customer_id, provider_name, resource_id)"),
    _table(COMPLETE_INVOICES, InvoiceMark, {
        "customer_id": _LC, "provider_name": _LC, "invoice_id": _S, "completed_at": _TS,
    }, "ReplacingMergeTree(completed_at) ORDER BY (customer_id, provider_name, invoice_id)"),
    _table(COLLECTOR_STATE, StateEntry, {
        "customer_id": _LC, "provider_name": _LC, "key": _S, "value": _S, "updated_at": _TS,
    }, "ReplacingMergeTree(updated_at) ORDER BY (customer_id, provider_name, key)"),
    # Replacing: processes opening one server at once may both record a step.
    _table(SCHEMA_VERSIONS, SchemaVersion, {"version": "UInt32", "applied_at": _TS},
           "ReplacingMergeTree(applied_at) ORDER BY version"),
)}

# Forward steps for stores made by older versions: version -> statements ({db}: the database).
# Version 1 is the tables as first released; a new store is created whole by `ddl` and then
# runs every step as a no-op. Append; never edit a released step. Every step must be
# idempotent (IF NOT EXISTS): processes opening one server at once may each apply it.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Which feed a cost line came from (rows.INVOICE, rows.PENDING, ...), so that a source
    # written as windows replaces only its own rows.
    2: ("ALTER TABLE {db}.cost_lines ADD COLUMN IF NOT EXISTS source LowCardinality(String) "
        "AFTER collected_at",),
}
SCHEMA_VERSION = max(MIGRATIONS)


def wire_type(ch_type: str) -> str:
    """The type a column travels as: the server converts on insert, far faster than Python.

    Decimals go as exact text; LowCardinality as plain strings (no client-side dictionary).
    """
    if ch_type.startswith(("Decimal", "LowCardinality")):
        return "String"
    return ch_type


_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def ticks(value: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is UTC (as everywhere in this project)."""
    return (value - (_EPOCH if value.tzinfo is None else _EPOCH_UTC)) // _MICRO


def _ticks_column(values: list) -> list:
    # Timestamps repeat (collected_at, billing periods): convert each distinct one once.
    cache: dict = {}
    out = []
    append = out.append
    for v in values:
        t = cache.get(v)
        if t is None:
            t = cache[v] = None if v is None else ticks(v)
        append(t)
    return out


@cache  # one converter per scale: wire_columns tells columns of one type by it
def _decimal_column(scale: int):
    spec = f".{scale}f"  # rounds half-even to the column's scale; Decimal in, exact text out
    return lambda values: list(map(format, values, repeat(spec, len(values))))


def _converter(ch_type: str):
    if ch_type.startswith("Decimal"):
        return _decimal_column(int(ch_type.rstrip(")").rsplit(",", 1)[1]))
    if "DateTime64" in ch_type:
        return _ticks_column
    return None


WIRE_TYPES: dict[str, list[str]] = {
    name: [wire_type(t) for t in table.types.values()] for name, table in TABLES.items()
}
_GETTERS = {name: [attrgetter(col) for col in table.types] for name, table in TABLES.items()}
_CONVERTERS = {name: [_converter(t) for t in table.types.values()]
               for name, table in TABLES.items()}


def pivot(table: Table, rows: list) -> list[list]:
    """Rows as columns of their values, in `table.columns` order (not yet in wire form)."""
    return [list(map(get, rows)) for get in _GETTERS[table.name]]


def extend_columns(columns: list[list], table: Table, rows: list) -> None:
    """Append rows to columns that `pivot` made."""
    for column, get in zip(columns, _GETTERS[table.name], strict=True):
        column.extend(map(get, rows))


def wire_columns(table: Table, columns: list[list]) -> list[list]:
    """Columns of values (from `pivot`) in wire form: Decimals as exact text, timestamps as
    microseconds."""
    out: list[list] = []
    converted: list[tuple[list, object, list]] = []  # (values, converter, wire form)
    for column, convert in zip(columns, _CONVERTERS[table.name], strict=True):
        if convert is None:
            out.append(column)
            continue
        # A column holding the very same objects as one converted already (effective and
        # list cost are mostly billed cost's Decimals) reuses its wire form.
        wire = next((w for values, c, w in converted if c is convert
                     and len(values) == len(column) and all(map(is_, values, column))), None)
        if wire is None:
            wire = convert(column)
            converted.append((column, convert, wire))
        out.append(wire)
    return out

