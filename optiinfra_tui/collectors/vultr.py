"""Vultr: invoices, pending charges, account, billing history and instances as FOCUS-shaped rows.

Parsers are pure functions (a JSON object in, a row out) that raise DataError on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from urllib.parse import quote

from optiinfra_tui.collectors.base import CollectContext, ProviderCollector
from optiinfra_tui.collectors.fields import (
    MISSING,
    parse_datetime,
    parse_decimal,
    parse_entry,
    parse_id,
    parse_int,
    parse_object,
    parse_optional_datetime,
    parse_text,
    within,
)
from optiinfra_tui.collectors.http import ApiClient, PageRequest, tls_trust
from optiinfra_tui.collectors.ratelimit import limiter_for
from optiinfra_tui.collectors.vultr_spec import VULTR_API_URL_DEFAULT
from optiinfra_tui.errors import DataError
from optiinfra_tui.providers import Account
from optiinfra_tui.rows import (
    ACCOUNT_SNAPSHOTS,
    COST_LINES,
    INVOICE,
    LEDGER,
    PENDING,
    PENDING_CHARGES,
    RESOURCES,
    AccountSnapshot,
    Batch,
    CostRow,
    LedgerEntry,
    ResourceRow,
)
from optiinfra_tui.settings import Settings

PROVIDER = "vultr"
_BRACKETS_RE = re.compile(r"\[([^\[\]]+)\]")
_PARENS_RE = re.compile(r"\(([^()]+)\)")
_ZERO = Decimal(0)


# --- Vultr-specific fields ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def billing_period_of(period_end: datetime) -> date:
    """First day of the month holding the charge's last second (an end at 00:00 belongs before)."""
    last = period_end - timedelta(seconds=1)
    return date(last.year, last.month, 1)


@lru_cache(maxsize=4096)
def resource_name_of(description: str) -> str:
    """'1.1.1.1 (8192 MB) [web-1]' -> 'web-1'; 'Load Balancer (lb)' -> 'lb'; else ''."""
    found = _BRACKETS_RE.findall(description) or _PARENS_RE.findall(description)
    return found[-1].strip() if found else ""


def next_cursor(body: dict, request: PageRequest) -> PageRequest | None:
    """Vultr's paging: the next cursor is in meta.links.next (empty when done), sent back as
    `cursor=`."""
    meta = body.get("meta")
    links = meta.get("links") if isinstance(meta, dict) else None
    cursor = links.get("next") if isinstance(links, dict) else None
    if cursor is None or cursor == "":
        return None
    where = f"Vultr GET {request.url}: meta.links.next"
    if not isinstance(cursor, str):
        raise DataError(f"{where} is not a string")
    try:
        cursor.encode("utf-8")  # it goes back in a URL: a lone surrogate can't
    except UnicodeEncodeError:
        raise DataError(f"{where} is not text") from None
    return replace(request, params={**request.params, "cursor": cursor})


def page_items(body: dict, list_key: str, request: PageRequest) -> list[dict]:
    """The page's `list_key` list of objects."""
    items = body.get(list_key)
    if not isinstance(items, list):
        found = "is missing" if list_key not in body else f"is a {type(items).__name__}"
        raise DataError(f"Vultr GET {request.url}: '{list_key}' {found}, expected a list")
    if not all(isinstance(item, dict) for item in items):
        raise DataError(f"Vultr GET {request.url}: '{list_key}' holds a non-object")
    return items


# --- row parsers -----------------------------------------------------------------------------


def parse_charge(
    item: object,
    ctx: CollectContext,
    *,
    line_id: str,
    invoice_id: str,
    is_estimate: bool,
    fallback_end: datetime,
    where: str,
) -> CostRow:
    """One invoice item (or pending charge, same shape) as a CostRow."""
    item = parse_object(item, where)
    get = item.get
    # Fields are named bare and `where` is prefixed only on failure: formatting nine labels
    # per line was a fifth of the parse time.
    try:
        total = parse_decimal(get("total", MISSING), "total")
        description = parse_text(get("description", MISSING), "description", required=True)
        unit_type = parse_text(get("unit_type"), "unit_type")
        units = parse_decimal(get("units"), "units", _ZERO)
        unit_price = parse_decimal(get("unit_price"), "unit_price", _ZERO)
        end = parse_optional_datetime(get("end_date"), "end_date") or fallback_end
        start = parse_optional_datetime(get("start_date"), "start_date") or end
        service_name = parse_text(get("product"), "product")
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    is_credit = total < 0 or unit_type.strip().lower() == "discount"
    customer_id = ctx.customer_id
    # Positional, in CostRow's field order (a keyword call costs twice as much): the
    # names are in the comments.
    return CostRow(
        line_id, customer_id, PROVIDER,  # line_id, customer_id, provider_name
        customer_id, invoice_id,  # billing_account_id, invoice_id
        total, total,  # billed_cost, effective_cost
        # list_cost: Vultr publishes no list price per line: a charge's list cost is what it
        # billed, and a discount has none (the discount is the gap between list and billed).
        _ZERO if is_credit else total,
        unit_price, "USD",  # list_unit_price, billing_currency
        start, end, billing_period_of(end),  # charge_period_start, _end, billing_period
        "Credit" if is_credit else "Usage",  # charge_category
        description, service_name,  # charge_description, service_name
        "", resource_name_of(description), "",  # resource_id, resource_name, region_id
        units, unit_type,  # pricing_quantity, pricing_unit
        is_estimate, ctx.run_id, ctx.collected_at,  # is_estimate, run_id, collected_at
        PENDING if is_estimate else INVOICE,  # source
    )


def parse_invoice_item(
    item: object, ctx: CollectContext, invoice_id: str, position: int, fallback_end: datetime
) -> CostRow:
    """Line `position` (0-based, across pages) of an invoice."""
    return parse_charge(
        item, ctx,
        line_id=f"inv:{invoice_id}:{position}",
        invoice_id=invoice_id,
        is_estimate=False,
        fallback_end=fallback_end,
        where=f"invoice {invoice_id} item {position}",
    )


def parse_pending_charge(item: object, ctx: CollectContext, position: int) -> CostRow:
    """Entry `position` of /billing/pending-charges: an estimate for the current month."""
    row = parse_charge(
        item, ctx,
        line_id="",
        invoice_id="",
        is_estimate=True,
        fallback_end=ctx.collected_at,
        where=f"pending charge {position}",
    )
    row.line_id = f"pending:{row.billing_period:%Y-%m}:{position}"
    return row


def parse_account(body: object, ctx: CollectContext) -> AccountSnapshot:
    """The 'account' object of GET /account."""
    account = parse_object(parse_object(body, "/account response").get("account"), "account")
    return AccountSnapshot(
        customer_id=ctx.customer_id,
        provider_name=PROVIDER,
        balance=parse_decimal(account.get("balance", MISSING), "account: balance"),
        pending_charges=parse_decimal(account.get("pending_charges", MISSING),
                                      "account: pending_charges"),
        last_payment_date=parse_optional_datetime(account.get("last_payment_date"),
                                                  "account: last_payment_date"),
        last_payment_amount=parse_decimal(account.get("last_payment_amount"),
                                          "account: last_payment_amount", Decimal(0)),
        run_id=ctx.run_id,
        collected_at=ctx.collected_at,
    )


def parse_billing_entry(item: object, ctx: CollectContext) -> LedgerEntry:
    """One entry of /billing/history (invoice, payment, credit)."""
    entry_id, get = parse_entry(item, "billing history entry")
    with within(f"billing history entry {entry_id}"):
        return LedgerEntry(
            line_id=f"bh:{entry_id}", customer_id=ctx.customer_id, provider_name=PROVIDER,
            entry_id=entry_id, entry_date=parse_datetime(get("date"), "date"),
            entry_type=parse_text(get("type"), "type"),
            description=parse_text(get("description"), "description"),
            amount=parse_decimal(get("amount", MISSING), "amount"),
            balance=parse_decimal(get("balance"), "balance", _ZERO),
            run_id=ctx.run_id, collected_at=ctx.collected_at)


def parse_instance(item: object, ctx: CollectContext) -> ResourceRow:
    """One entry of /instances."""
    instance_id, get = parse_entry(item, "instance")
    with within(f"instance {instance_id}"):
        return ResourceRow(
            customer_id=ctx.customer_id, provider_name=PROVIDER, resource_id=instance_id,
            resource_name=parse_text(get("label"), "label"), resource_type="instance",
            region_id=parse_text(get("region"), "region"),
            status=parse_text(get("status"), "status"), plan=parse_text(get("plan"), "plan"),
            vcpu_count=parse_int(get("vcpu_count"), "vcpu_count", 0),
            ram_mb=parse_int(get("ram"), "ram", 0), disk_gb=parse_int(get("disk"), "disk", 0),
            created_at=parse_optional_datetime(get("date_created"), "date_created"),
            run_id=ctx.run_id, collected_at=ctx.collected_at)


def _issued(invoice: dict, ctx: CollectContext) -> datetime:
    """The invoice's date, only a fallback for lines without dates: an odd format is no failure."""
    try:
        return parse_optional_datetime(invoice.get("date"), "invoice date") or ctx.collected_at
    except DataError:
        return ctx.collected_at


# --- the collector ---------------------------------------------------------------------------


class VultrCollector(ProviderCollector):
    """Collects one customer's Vultr data through the v2 API."""

    provider = PROVIDER
    data_types = ("cost", "account", "resource")
    skips_known_invoices = True

    def __init__(self, settings: Settings, customer_id: str, *, account: Account | None = None,
                 per_page: int = 500) -> None:
        account = account or settings.account(customer_id, PROVIDER)
        token = settings.credential(customer_id, PROVIDER, account)  # ConfigError: before any request
        self.customer_id = customer_id
        self._per_page = per_page
        self._client = ApiClient(
            str(settings.option("VULTR_API_URL")),
            token,
            limiter_for(token, float(settings.option("VULTR_MAX_RPS"))),
            service="Vultr",
            key_env=account.get("api_key_env"),
            url_env="VULTR_API_URL",
            url_hint="for Vultr it ends in /v2",
            default_url=VULTR_API_URL_DEFAULT,
            verify=tls_trust(settings.env),
        )

    def _batches(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        walks = {"cost": self._costs, "account": self._account, "resource": self._resources}
        return walks[data_type](ctx)

    def _probe(self) -> None:
        """GET /account."""
        self._client.get_json("/account")

    def close(self) -> None:
        self._client.close()

    def _pages(self, path: str, list_key: str) -> Iterator[list[dict]]:
        """Each page's `list_key` list, walked by cursor (Vultr allows 500 per page)."""
        first = PageRequest(path, {"per_page": max(1, min(self._per_page, 500))})
        for body in self._client.pages(first, next_cursor):
            yield page_items(body, list_key, first)

    def _costs(self, ctx: CollectContext) -> Iterator[Batch]:
        for invoices in self._pages("/billing/invoices", "billing_invoices"):
            for invoice in invoices:
                invoice_id = parse_id(invoice.get("id"), "invoice: id")
                if invoice_id in ctx.known_invoice_ids and invoice_id != ctx.latest_invoice_id:
                    continue
                yield from self._invoice_lines(ctx, invoice_id, _issued(invoice, ctx))
        body = self._client.get_json("/billing/pending-charges")
        pending = body.get("pending_charges")
        if not isinstance(pending, list):
            raise DataError("Vultr GET /billing/pending-charges: 'pending_charges' is "
                            f"{'missing' if 'pending_charges' not in body else 'not a list'}")
        yield Batch(PENDING_CHARGES,
                    [parse_pending_charge(item, ctx, i) for i, item in enumerate(pending)])

    def _invoice_lines(self, ctx: CollectContext, invoice_id: str,
                       fallback_end: datetime) -> Iterator[Batch]:
        position = 0
        path = f"/billing/invoices/{quote(invoice_id, safe='')}/items"
        for items in self._pages(path, "invoice_items"):
            rows = [parse_invoice_item(item, ctx, invoice_id, position + i, fallback_end)
                    for i, item in enumerate(items)]
            position += len(rows)
            if rows:
                yield Batch(COST_LINES, rows)

    def _account(self, ctx: CollectContext) -> Iterator[Batch]:
        yield Batch(ACCOUNT_SNAPSHOTS, [parse_account(self._client.get_json("/account"), ctx)])
        for entries in self._pages("/billing/history", "billing_history"):
            if entries:
                yield Batch(LEDGER, [parse_billing_entry(e, ctx) for e in entries])

    def _resources(self, ctx: CollectContext) -> Iterator[Batch]:
        for instances in self._pages("/instances", "instances"):
            if instances:
                yield Batch(RESOURCES, [parse_instance(i, ctx) for i in instances])
