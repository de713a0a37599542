"""The FOCUS row model: what collectors produce and storage writes, in batches per table.

FOCUS is the FinOps Open Cost & Usage Spec; column names are its own, in snake_case.
Collectors and storage both import this module and never each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

# Money's precision: ISO 4217 minor units of the currencies that don't have two.
CURRENCY_DIGITS = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}

# Tables a batch can be written to (see storage/metrics_schema.py).
COST_LINES = "cost_lines"  # invoice lines: final charges
PENDING_CHARGES = "pending_charges"  # the current estimate: replaces the previous snapshot
ACCOUNT_SNAPSHOTS = "account_snapshots"
LEDGER = "ledger"
RESOURCES = "resources"

# Which feed a cost line came from. A source that revises its figures is written as windows,
# each a replacement of that source's rows only: an invoice never replaces an estimate's
# window, nor a Cost Explorer window an export's.
INVOICE = "invoice"
PENDING = "pending"
COST_EXPLORER = "cost_explorer"  # a cost API's daily totals per service, revised for weeks
DATA_EXPORT = "data_export"  # billing export files (FOCUS 1.0 / CUR 2.0): line items
BIGQUERY_EXPORT = "bigquery_export"  # a billing export table: daily sums, rows arrive late
COST_MANAGEMENT = "cost_management"  # a cost query API's daily totals, revised for days
# A month holding rows of the key source counts none of the value sources' rows (of the same
# customer and provider): both describe the same spend, the key source in more detail.
SUPERSEDES = {DATA_EXPORT: (COST_EXPLORER, COST_MANAGEMENT)}

# Instructions a collector yields between its rows (a Batch of one each): storage carries them
# out after storing every row yielded before them.
REPLACE_WINDOW = "replace_window"  # rows: [Window]
IMPORT_FILES = "import_files"  # rows: [FileImport]


@dataclass(slots=True)
class CostRow:
    """One charge. `line_id` is deterministic: the same charge always gets the same id."""

    line_id: str
    customer_id: str
    provider_name: str
    billing_account_id: str
    invoice_id: str
    billed_cost: Decimal
    effective_cost: Decimal
    list_cost: Decimal
    list_unit_price: Decimal
    billing_currency: str
    charge_period_start: datetime
    charge_period_end: datetime
    billing_period: date  # first day of the month the charge belongs to
    charge_category: str  # FOCUS: Usage | Purchase | Credit | Tax | Adjustment
    charge_description: str
    service_name: str
    resource_id: str
    resource_name: str
    region_id: str
    pricing_quantity: Decimal
    pricing_unit: str
    is_estimate: bool
    run_id: int
    collected_at: datetime
    source: str = ""  # INVOICE, PENDING, ...; '' for rows stored before the column existed


@dataclass(slots=True)
class AccountSnapshot:
    customer_id: str
    provider_name: str
    balance: Decimal
    pending_charges: Decimal
    last_payment_date: datetime | None
    last_payment_amount: Decimal
    run_id: int
    collected_at: datetime


@dataclass(slots=True)
class LedgerEntry:
    line_id: str
    customer_id: str
    provider_name: str
    entry_id: str
    entry_date: datetime
    entry_type: str
    description: str
    amount: Decimal
    balance: Decimal
    run_id: int
    collected_at: datetime


@dataclass(slots=True)
class ResourceRow:
    customer_id: str
    provider_name: str
    resource_id: str
    resource_name: str
    resource_type: str
    region_id: str
    status: str
    plan: str
    vcpu_count: int
    ram_mb: int
    disk_gb: int
    created_at: datetime | None
    run_id: int
    collected_at: datetime


@dataclass(slots=True)
class Window:
    """One source's whole answer for some billing periods (and, with `since`, for every charge
    from that time on): that source's rows there which this run did not write (older than
    `collected_at`) leave every total. `state` is kept for the collector's next runs
    (CollectContext.state) once the window is stored."""

    customer_id: str
    provider_name: str
    source: str
    billing_periods: tuple[date, ...]  # first days of months
    collected_at: datetime  # the version this run's rows carry
    state: dict[str, str]
    since: datetime | None = None  # charge_period_start from which the answer is whole


@dataclass(slots=True)
class FileImport:
    """Files that ClickHouse reads itself into cost_lines, rows never passing through Python.

    `select` maps cost_lines columns to SQL expressions over the files' columns, or is a
    function making that mapping from the columns (name -> ClickHouse type) ClickHouse finds in
    the first file, for exports whose manifest doesn't list them. Storage adds the run's columns
    (customer, provider, source, run, collected_at). The files are read with s3(), signed by
    `credentials` (access key id, secret, session token), or, given `headers`, with url() and
    the headers it returns (called before each file: a token is renewed as it expires).
    Neither is ever logged or stored. With `expected_rows`, an import that stores another
    number of rows is taken back: a file was cut short or changed under it.
    """

    customer_id: str
    provider_name: str
    source: str
    billing_period: date
    urls: tuple[str, ...]  # https:// object URLs, path-style or virtual-hosted
    file_format: str  # ClickHouse input format: Parquet, CSVWithNames (gzip by extension)
    select: dict[str, str] | Callable[[dict[str, str]], dict[str, str]]
    # line_id = prefix:file:row. A prefix of its own per delivery: an import taken back then
    # hides only its own rows, never the ids of the delivery before it.
    line_id_prefix: str
    run_id: int
    collected_at: datetime
    credentials: tuple[str, str, str] = field(default=("", "", ""), repr=False)
    headers: Callable[[], Mapping[str, str]] | None = field(default=None, repr=False)
    expected_rows: int | None = None


@dataclass(slots=True)
class Batch:
    """Rows for one table. For PENDING_CHARGES a run yields exactly one batch: the whole snapshot."""

    table: str
    rows: list
