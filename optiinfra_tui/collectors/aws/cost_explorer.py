"""AWS Cost Explorer: one GetCostAndUsage query per run, daily, by service and record type.

Its figures are estimates until a month closes and are revised for weeks: each run re-reads a
window (the previous month, unless it closed, to tomorrow) and writes it as a replacement.
Parsers are pure functions (a JSON object in, rows out) that raise DataError on bad input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal

from optiinfra_tui.collectors.aws import PROVIDER
from optiinfra_tui.collectors.base import CollectContext, next_month, previous_month
from optiinfra_tui.collectors.fields import parse_decimal, parse_object, parse_text
from optiinfra_tui.errors import DataError
from optiinfra_tui.rows import COST_EXPLORER, COST_LINES, REPLACE_WINDOW, Batch, CostRow, Window

METRICS = ("UnblendedCost", "AmortizedCost")
CLOSED = "ce:closed:"  # state key prefix: + YYYY-MM of a month whose answer is final
MAX_PAGES = 1000  # a token seen twice, or this many pages, ends the walk: never a loop
_ZERO = Decimal(0)


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def window_for(today: date, state: Mapping[str, str]) -> tuple[date, date, tuple[date, ...]]:
    """(Start, End exclusive, billing periods) to ask for: the previous month unless its answer
    was final at an earlier run, then this month, to tomorrow."""
    this = first_of_month(today)
    start = previous_month(this)
    if f"{CLOSED}{start:%Y-%m}" in state:
        start = this
    end = today + timedelta(days=1)
    periods, month = [], start
    while month <= this:
        periods.append(month)
        month = next_month(month)
    return start, end, tuple(periods)


def request(start: date, end: date, token: str | None = None) -> dict:
    """The GetCostAndUsage parameters."""
    params = {
        "TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
        "Granularity": "DAILY",
        "Metrics": list(METRICS),
        "GroupBy": [{"Type": "DIMENSION", "Key": "SERVICE"},
                    {"Type": "DIMENSION", "Key": "RECORD_TYPE"}],
    }
    if token:
        params["NextPageToken"] = token
    return params


# FOCUS ChargeCategory of a RECORD_TYPE (or a CUR line item type), lower-cased without spaces
# or underscores: ends with "usage" (Usage, DiscountedUsage, SavingsPlanCoveredUsage); is a
# credit or refund; is tax; holds "fee" or "upfront" (RIFee, Recurring/Upfront reservation
# fee, ...); else Adjustment (negations, discounts). exports.category_sql is the same in SQL.
CATEGORY_RULES = (("Usage", "usage"), ("Credit", ("credit", "refund")), ("Tax", ("tax",)),
                  ("Purchase", ("fee", "upfront")))


def charge_category(record_type: str) -> str:
    """FOCUS ChargeCategory of a RECORD_TYPE (or CUR line item type)."""
    key = record_type.replace(" ", "").replace("_", "").lower()
    (usage, suffix), (credit, credits), (tax, taxes), (purchase, words) = CATEGORY_RULES
    if key.endswith(suffix):
        return usage
    if key in credits:
        return credit
    if key in taxes:
        return tax
    if any(w in key for w in words):
        return purchase
    return "Adjustment"


def _day(value: object, field: str) -> date:
    text = parse_text(value, field, required=True)
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise DataError(f"{field} is not a date: {text[:40]!r}") from None


def _amount(metrics: object, name: str, where: str) -> tuple[Decimal, str]:
    if not isinstance(metrics, dict) or not isinstance(metrics.get(name), dict):
        raise DataError(f"{where}: metric {name} is missing")
    metric = metrics[name]
    return (parse_decimal(metric.get("Amount"), f"{where}: {name}.Amount"),
            parse_text(metric.get("Unit"), f"{where}: {name}.Unit").strip())


def parse_result(result: object, ctx: CollectContext) -> tuple[date, bool, list[CostRow]]:
    """One ResultsByTime entry (a day): (its day, Estimated, its rows)."""
    result = parse_object(result, "ResultsByTime entry")
    period = result.get("TimePeriod") if isinstance(result.get("TimePeriod"), dict) else {}
    day = _day(period.get("Start"), "TimePeriod.Start")
    end = _day(period.get("End"), f"{day} TimePeriod.End") if period.get("End") else (
        day + timedelta(days=1))
    estimated = result.get("Estimated")
    if not isinstance(estimated, bool):
        raise DataError(f"{day}: Estimated is {estimated!r}, expected true or false")
    groups = result.get("Groups") or []
    if not isinstance(groups, list):
        raise DataError(f"{day}: Groups is a {type(groups).__name__}, expected a list")
    start_at, end_at = datetime(day.year, day.month, day.day), datetime(end.year, end.month,
                                                                         end.day)
    month = first_of_month(day)
    rows = []
    for i, group in enumerate(groups):
        where = f"{day} group {i}"
        group = parse_object(group, where)
        keys = group.get("Keys")
        if not isinstance(keys, list) or len(keys) != 2:
            raise DataError(f"{where}: Keys is {keys!r}, expected [service, record type]")
        service = parse_text(keys[0], f"{where}: service")
        record_type = parse_text(keys[1], f"{where}: record type")
        billed, currency = _amount(group.get("Metrics"), "UnblendedCost", where)
        effective, effective_unit = _amount(group.get("Metrics"), "AmortizedCost", where)
        if effective_unit and currency and effective_unit != currency:
            raise DataError(f"{where}: UnblendedCost is in {currency} but AmortizedCost in "
                            f"{effective_unit}")
        currency = currency or effective_unit or "USD"
        rows.append(CostRow(
            line_id=f"ce:{day.isoformat()}:{service}:{record_type}:{currency}",
            customer_id=ctx.customer_id, provider_name=PROVIDER,
            billing_account_id=ctx.customer_id, invoice_id="",
            billed_cost=billed, effective_cost=effective,
            # No list price in Cost Explorer's answer: a charge's list cost is what it billed.
            list_cost=billed, list_unit_price=_ZERO, billing_currency=currency,
            charge_period_start=start_at, charge_period_end=end_at, billing_period=month,
            charge_category=charge_category(record_type),
            charge_description=f"{service} ({record_type})", service_name=service,
            resource_id="", resource_name="", region_id="", pricing_quantity=_ZERO,
            pricing_unit="", is_estimate=estimated, run_id=ctx.run_id,
            collected_at=ctx.collected_at, source=COST_EXPLORER))
    return day, estimated, rows


class _Months:
    """Per month of the window: whether every day seen was final."""

    def __init__(self, periods: tuple[date, ...], today: date) -> None:
        # Only months over before today can be closed.
        self.final = {m: None for m in periods if next_month(m) <= today}

    def saw(self, day: date, estimated: bool) -> None:
        month = first_of_month(day)
        if month in self.final:
            self.final[month] = (self.final[month] is not False) and not estimated

    def closed(self) -> list[date]:
        return [m for m, final in self.final.items() if final]


def collect(client, ctx: CollectContext, today: date, translate) -> Iterator[Batch]:
    """Every page of the window's one query as batches, then the window as a replacement.

    `translate(exc)` turns a botocore error into the product's; DataUnavailableException (a new
    account) ends the walk with no rows and replaces nothing.
    """
    start, end, periods = window_for(today, ctx.state)
    months = _Months(periods, today)
    token, seen = None, set()
    for _page in range(MAX_PAGES):
        try:
            answer = client.get_cost_and_usage(**request(start, end, token))
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "DataUnavailableException":
                return
            raise translate(exc) from None
        results = answer.get("ResultsByTime")
        if not isinstance(results, list):
            raise DataError("Cost Explorer GetCostAndUsage: ResultsByTime is missing")
        rows = []
        for result in results:
            day, estimated, day_rows = parse_result(result, ctx)
            months.saw(day, estimated)
            rows.extend(day_rows)
        if rows:
            yield Batch(COST_LINES, rows)
        token = answer.get("NextPageToken")
        if not token:
            break
        if token in seen:
            raise DataError("Cost Explorer sent the same NextPageToken twice: the answer is "
                            "incomplete, so the window is not replaced.")
        seen.add(token)
    else:
        raise DataError(f"Cost Explorer's answer ran past {MAX_PAGES} pages: the window is not "
                        "replaced.")
    yield Batch(REPLACE_WINDOW, [Window(
        ctx.customer_id, PROVIDER, COST_EXPLORER, periods, ctx.collected_at,
        {f"{CLOSED}{m:%Y-%m}": "final" for m in months.closed()})])
