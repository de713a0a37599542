"""The pure Vultr parsers: a JSON object in, a row out, DataError on anything off."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pytest

from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.collectors.fields import decode_json, parse_datetime, parse_decimal
from optiinfra_tui.collectors.vultr import (
    billing_period_of,
    parse_account,
    parse_billing_entry,
    parse_instance,
    parse_invoice_item,
    parse_pending_charge,
    resource_name_of,
)
from optiinfra_tui.errors import DataError

CTX = CollectContext(customer_id="acme", run_id=7, collected_at=datetime(2024, 3, 15, 12, 0))
FALLBACK = datetime(2024, 3, 1)

ITEM_TEXT = """{
  "description": "1.1.1.1 (8192 MB) [my-instance]",
  "product": "Vultr Cloud Compute",
  "start_date": "2021-08-31 20:00:00",
  "end_date": "2021-09-30 20:00:00",
  "units": 371,
  "unit_type": "hours",
  "unit_price": 0.0595,
  "total": 22.09
}"""


def item(**changes: object) -> dict:
    body = decode_json(ITEM_TEXT.encode())
    for key, value in changes.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


def test_invoice_item_maps_to_focus_columns():
    row = parse_invoice_item(item(), CTX, "123456", 4, FALLBACK)
    assert row.line_id == "inv:123456:4"
    assert row.invoice_id == "123456"
    assert row.billed_cost == row.effective_cost == row.list_cost == Decimal("22.09")
    assert isinstance(row.billed_cost, Decimal)
    assert row.list_unit_price == Decimal("0.0595")
    assert row.pricing_quantity == Decimal(371)
    assert row.pricing_unit == "hours"
    assert row.charge_category == "Usage"
    assert row.service_name == "Vultr Cloud Compute"
    assert row.charge_description == "1.1.1.1 (8192 MB) [my-instance]"
    assert row.resource_name == "my-instance"
    assert (row.resource_id, row.region_id, row.billing_currency) == ("", "", "USD")
    assert (row.customer_id, row.billing_account_id, row.provider_name) == ("acme", "acme", "vultr")
    assert row.charge_period_start == datetime(2021, 8, 31, 20, 0)
    assert row.charge_period_end == datetime(2021, 9, 30, 20, 0)
    assert row.billing_period == date(2021, 9, 1)
    assert row.is_estimate is False
    assert (row.run_id, row.collected_at) == (7, CTX.collected_at)
    assert row.source == "invoice"


def test_discount_lines_are_credits():
    by_unit = parse_invoice_item(item(unit_type="discount", total=Decimal("5.00")), CTX, "1", 0,
                                 FALLBACK)
    by_sign = parse_invoice_item(item(total=Decimal("-3.10")), CTX, "1", 1, FALLBACK)
    assert by_unit.charge_category == by_sign.charge_category == "Credit"
    assert by_sign.billed_cost == by_sign.effective_cost == Decimal("-3.10")
    assert by_sign.list_cost == 0  # a discount has no list price


def test_decimal_sums_are_exact():
    text = '{"a": [' + ", ".join(['{"total": 0.1, "description": "x"}'] * 3) + "]}"
    lines = decode_json(text.encode())["a"]
    rows = [parse_invoice_item(line, CTX, "9", i, FALLBACK) for i, line in enumerate(lines)]
    assert sum(r.billed_cost for r in rows) == Decimal("0.3")
    assert sum(float(r.billed_cost) for r in rows) != 0.3  # what float would have done
    assert parse_decimal(Decimal("0.1"), "x") + parse_decimal("0.2", "x") == Decimal("0.3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-08-31 20:00:00", datetime(2021, 8, 31, 20, 0)),
        ("2021-09-15T00:00:00+00:00", datetime(2021, 9, 15)),
        ("2021-09-15T02:30:00+02:00", datetime(2021, 9, 15, 0, 30)),
        ("2021-09-14T22:00:00-04:00", datetime(2021, 9, 15, 2, 0)),
        ("2021-09-15T00:00:00Z", datetime(2021, 9, 15)),
    ],
)
def test_dates_become_naive_utc(text, expected):
    parsed = parse_datetime(text, "d")
    assert parsed == expected and parsed.tzinfo is None


@pytest.mark.parametrize("bad", ["", "yesterday", "2021-13-01 00:00:00", 20210901, None])
def test_bad_dates_are_data_errors(bad):
    with pytest.raises(DataError, match="d"):
        parse_datetime(bad, "d")


@pytest.mark.parametrize(
    ("end", "period"),
    [
        (datetime(2021, 9, 30, 20, 0), date(2021, 9, 1)),  # Vultr's 20:00 UTC month ends
        (datetime(2021, 10, 1, 0, 0), date(2021, 9, 1)),  # an end at midnight belongs before
        (datetime(2021, 10, 1, 0, 0, 1), date(2021, 10, 1)),
        (datetime(2022, 1, 1), date(2021, 12, 1)),  # across a year
    ],
)
def test_billing_period_is_month_of_last_second(end, period):
    assert billing_period_of(end) == period


def test_pending_charge_line_id_and_estimate():
    row = parse_pending_charge(item(start_date="2024-02-29 20:00:00",
                                    end_date="2024-03-31 20:00:00"), CTX, 2)
    assert row.line_id == "pending:2024-03:2"
    assert row.billing_period == date(2024, 3, 1)
    assert row.is_estimate is True
    assert row.invoice_id == ""
    assert row.source == "pending"


def test_missing_dates_fall_back():
    row = parse_invoice_item(item(start_date=None, end_date=None), CTX, "1", 0, FALLBACK)
    assert row.charge_period_start == row.charge_period_end == FALLBACK
    assert row.billing_period == date(2024, 2, 1)


@pytest.mark.parametrize("field", ["total", "description"])
def test_required_fields(field):
    with pytest.raises(DataError, match=f"invoice 55 item 3: {field} is missing"):
        parse_invoice_item(item(**{field: None}), CTX, "55", 3, FALLBACK)


@pytest.mark.parametrize(
    "value",
    [True, False, "abc", "1_000", "0x10", "", [], {}, 1.5, "NaN", "Infinity",
     Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), 10**13, "2e12",
     Decimal("-1000000000001")],
)
def test_bad_amounts_are_data_errors(value):
    with pytest.raises(DataError, match="total"):
        parse_invoice_item(item(total=value), CTX, "1", 0, FALLBACK)


@pytest.mark.parametrize(("value", "expected"), [("22.09", "22.09"), (" -3.5 ", "-3.5"),
                                                 (10, "10"), ("1e3", "1000"),
                                                 (Decimal("999999999999.99"), "999999999999.99")])
def test_numeric_strings_and_ints(value, expected):
    assert parse_invoice_item(item(total=value), CTX, "1", 0, FALLBACK).billed_cost == \
        Decimal(expected)


def test_non_finite_json_is_rejected_at_decode():
    for text in ('{"total": NaN}', '{"total": Infinity}', '{"total": -Infinity}'):
        with pytest.raises(DataError):
            decode_json(text.encode())


def test_wrong_types_are_data_errors():
    with pytest.raises(DataError, match="description"):
        parse_invoice_item(item(description=5), CTX, "1", 0, FALLBACK)
    with pytest.raises(DataError, match="product"):
        parse_invoice_item(item(product=["x"]), CTX, "1", 0, FALLBACK)
    with pytest.raises(DataError, match="expected an object"):
        parse_invoice_item(["not", "an", "object"], CTX, "1", 0, FALLBACK)
    with pytest.raises(DataError, match="units"):
        parse_invoice_item(item(units=True), CTX, "1", 0, FALLBACK)


@pytest.mark.parametrize(
    ("description", "name"),
    [("1.1.1.1 (8192 MB) [my-instance]", "my-instance"),
     ("Load Balancer (my-loadbalancer)", "my-loadbalancer"),
     ("Block Storage 40 GB [vol-1]", "vol-1"),
     ("Bandwidth overage", "")],
)
def test_resource_name_from_description(description, name):
    assert resource_name_of(description) == name


def test_account_snapshot():
    body = json.loads(
        '{"account": {"balance": -100.55, "pending_charges": 60.25, '
        '"last_payment_date": "2020-10-10T01:56:20+00:00", "last_payment_amount": -1.25}}',
        parse_float=Decimal,
    )
    snap = parse_account(body, CTX)
    assert (snap.balance, snap.pending_charges) == (Decimal("-100.55"), Decimal("60.25"))
    assert snap.last_payment_date == datetime(2020, 10, 10, 1, 56, 20)
    assert snap.last_payment_amount == Decimal("-1.25")
    empty = parse_account({"account": {"balance": 0, "pending_charges": 0,
                                       "last_payment_date": ""}}, CTX)
    assert empty.last_payment_date is None and empty.last_payment_amount == 0
    with pytest.raises(DataError, match="balance"):
        parse_account({"account": {"pending_charges": 1}}, CTX)
    with pytest.raises(DataError, match="account"):
        parse_account({}, CTX)


def test_billing_history_entry():
    entry = parse_billing_entry({"id": 123456, "date": "2020-10-10T01:56:20+00:00",
                                 "type": "invoice", "description": "Invoice #123456",
                                 "amount": Decimal("100.03"), "balance": Decimal("79.48")}, CTX)
    assert (entry.line_id, entry.entry_id, entry.entry_type) == ("bh:123456", "123456", "invoice")
    assert entry.amount == Decimal("100.03") and entry.balance == Decimal("79.48")
    with pytest.raises(DataError, match="id"):
        parse_billing_entry({"date": "2020-10-10", "amount": 1}, CTX)
    with pytest.raises(DataError, match="amount"):
        parse_billing_entry({"id": 1, "date": "2020-10-10"}, CTX)


def test_instance():
    row = parse_instance({"id": "cb676a46", "label": "web", "plan": "vc2-1c-2gb",
                          "region": "atl", "status": "active", "vcpu_count": 1, "ram": 2048,
                          "disk": 55, "date_created": "2020-10-10T01:56:20+00:00"}, CTX)
    assert (row.resource_id, row.resource_name, row.resource_type) == ("cb676a46", "web",
                                                                       "instance")
    assert (row.plan, row.region_id, row.status) == ("vc2-1c-2gb", "atl", "active")
    assert (row.vcpu_count, row.ram_mb, row.disk_gb) == (1, 2048, 55)
    assert row.created_at == datetime(2020, 10, 10, 1, 56, 20)
    with pytest.raises(DataError, match="ram"):
        parse_instance({"id": "x", "ram": Decimal("1.5")}, CTX)
    with pytest.raises(DataError, match="id"):
        parse_instance({"label": "no id"}, CTX)


def test_history_and_instance_errors_name_the_entry_then_the_field():
    with pytest.raises(DataError, match=r"^billing history entry 7: amount is missing$"):
        parse_billing_entry({"id": 7, "date": "2020-10-10"}, CTX)
    with pytest.raises(DataError, match=r"^instance x: ram is not a whole number: 1\.5$"):
        parse_instance({"id": "x", "ram": Decimal("1.5")}, CTX)
