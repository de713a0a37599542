"""Hypothesis strategies for Vultr responses: plausible shapes with hostile leaves.

Shared by tests/test_fuzz_parsers.py and bench/faults.py. Values are what `decode_json`
yields (non-integers as Decimal), plus floats, which the parsers must refuse too.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

TRICKY_TEXT = [
    "", " ", "0", "-0", "1e12", "1e13", "1E+9999", "-1e-9999", ".5", "5.", "+7", "٣",
    "NaN", "Infinity", "0x10", "1_000", "22.09", "  12  ",
    "2021-08-31 20:00:00", "2021-08-31T20:00:00+00:00", "2021-09-30T20:00:00-05:00",
    "0001-01-01 00:00:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
    "9999-12-31 23:59:59", "1900-01-01", "2299-12-31T23:59:59", "2024-02-30",
    "20210831", "2021-W35-2", "24:00", "[web-1]", "a (b) [c]", "([])", "\x00", "\ud800",
    "é" * 300, "🙂", "\u202e", "x" * 5000,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,4})?[eE][+-]?[0-9]{1,6}", fullmatch=True).map(Decimal),
    st.floats(),
    st.text(),
    st.sampled_from(TRICKY_TEXT),
    # Any date-time, the calendar's ends included, with an offset that may push it past them.
    st.builds(lambda d, off: d.isoformat(sep=" ") + off, st.datetimes(),
              st.sampled_from(["", "Z", "+01:00", "-01:00", "+23:59", "-23:59"])),
)

json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8,
)

_money = st.one_of(st.decimals(places=2, min_value=-10**6, max_value=10**6,
                               allow_nan=False), st.integers(-10**6, 10**6))
_date = st.sampled_from(["2021-08-31 20:00:00", "2021-09-30T20:00:00+00:00",
                         "0001-01-01 00:00:00", "9999-12-31T23:59:59-01:00"])


def _record(fields: dict) -> st.SearchStrategy:
    """A dict whose known keys are mostly valid, sometimes anything, sometimes absent."""
    values = {key: st.one_of(good, good, good, json_values) for key, good in fields.items()}
    full = st.fixed_dictionaries(values)
    return st.one_of(full, full, st.fixed_dictionaries({}, optional=values), json_values)


charge = _record({
    "description": st.text(min_size=1), "product": st.text(), "start_date": _date,
    "end_date": _date, "units": st.integers(0, 744), "unit_type": st.sampled_from(
        ["hours", "discount", "overage"]), "unit_price": _money, "total": _money,
})
account = st.fixed_dictionaries({}, optional={"account": _record({
    "balance": _money, "pending_charges": _money, "last_payment_date": _date,
    "last_payment_amount": _money,
})}) | json_values
billing_entry = _record({
    "id": st.integers(1, 10**9) | st.text(min_size=1), "date": _date,
    "type": st.sampled_from(["invoice", "payment", "credit"]), "description": st.text(),
    "amount": _money, "balance": _money,
})
instance = _record({
    "id": st.uuids().map(str), "label": st.text(), "region": st.text(max_size=4),
    "status": st.text(), "plan": st.text(), "vcpu_count": st.integers(0, 64),
    "ram": st.integers(0, 10**6), "disk": st.integers(0, 10**4), "date_created": _date,
})
invoice = _record({"id": st.integers(1, 10**9) | st.text(min_size=1), "date": _date})


def page(list_key: str, items: st.SearchStrategy) -> st.SearchStrategy:
    """One page of a listing: mostly well formed around fuzzed items, sometimes anything."""
    meta = st.one_of(st.just({"links": {"next": ""}}), json_values,
                     st.fixed_dictionaries({"links": st.fixed_dictionaries({"next": scalars})}))
    well_formed = st.fixed_dictionaries({list_key: st.lists(items, max_size=4), "meta": meta})
    return st.one_of(
        well_formed, well_formed, well_formed,
        st.fixed_dictionaries({}, optional={list_key: json_values, "meta": json_values}),
        json_values,
    )


# A whole Vultr account, one fuzzed body per endpoint (paths relative to /v2).
account_bodies = st.fixed_dictionaries({
    "/account": account,
    "/billing/history": page("billing_history", billing_entry),
    "/billing/invoices": page("billing_invoices", invoice),
    "/billing/invoices/*/items": page("invoice_items", charge),
    "/billing/pending-charges": page("pending_charges", charge),
    "/instances": page("instances", instance),
})
