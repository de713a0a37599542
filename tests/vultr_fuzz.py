"""Fuzzing the Vultr parsers: strategies (plausible shapes, hostile leaves), the parsers to
feed them, and a local server that serves a fuzzed account over HTTP.

Shared by tests/test_fuzz_parsers.py and bench/faults.py. Values are what `decode_json`
yields (non-integers as Decimal), plus floats, which the parsers must refuse too.
"""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_vultr import to_json
from hypothesis import strategies as st

from optiinfra_tui.collectors import fields, vultr
from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.errors import DataError

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

CTX = CollectContext(customer_id="acme", run_id=1, collected_at=datetime(2024, 3, 15, 12))

# parser name -> (strategy, call)
PARSERS = {
    "parse_decimal": (json_values, lambda v: fields.parse_decimal(v, "f")),
    "parse_int": (json_values, lambda v: fields.parse_int(v, "f", 0)),
    "parse_text": (json_values, lambda v: fields.parse_text(v, "f", required=True)),
    "parse_id": (json_values, lambda v: fields.parse_id(v, "f")),
    "parse_datetime": (json_values, lambda v: fields.parse_datetime(v, "f")),
    "parse_optional_datetime": (json_values, lambda v: fields.parse_optional_datetime(v, "f")),
    "parse_invoice_item": (charge, lambda v: vultr.parse_invoice_item(
        v, CTX, "42", 0, datetime(2024, 3, 1))),
    "parse_pending_charge": (charge, lambda v: vultr.parse_pending_charge(v, CTX, 0)),
    "parse_account": (account, lambda v: vultr.parse_account(v, CTX)),
    "parse_billing_entry": (billing_entry, lambda v: vultr.parse_billing_entry(v, CTX)),
    "parse_instance": (instance, lambda v: vultr.parse_instance(v, CTX)),
    "resource_name_of": (st.text() | st.sampled_from(TRICKY_TEXT), vultr.resource_name_of),
}


def check_row(row) -> None:
    """What a parser returns is fit to store: exact money of sane size, never a float."""
    if row is None or isinstance(row, str | int | datetime | date):
        return
    values = [row] if isinstance(row, Decimal) else [getattr(row, n) for n in row.__slots__]
    for value in values:
        assert not isinstance(value, float), row
        if isinstance(value, Decimal):
            assert value.is_finite() and abs(value) <= 10**12, row


class PageServer(ThreadingHTTPServer):
    """Serves one JSON body per Vultr path (relative to /v2); all invoices share one items body."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: dict[str, bytes] = {}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v2"

    def serve(self, bodies: dict) -> None:
        self.bodies = {path: body if isinstance(body, bytes) else to_json(body).encode()
                       for path, body in bodies.items()}

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0].removeprefix("/v2")
        if path.startswith("/billing/invoices/"):
            path = "/billing/invoices/*/items"
        body = self.server.bodies.get(path, b'{"error": "Not found."}')
        self.send_response(200 if path in self.server.bodies else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


def collect_everything(settings) -> int:
    """Walk each data type of the served account through the real collector and HTTP client.

    Returns how many data types ended in a DataError; any other exception propagates.
    """
    collector = vultr.VultrCollector(settings, settings.default_customer_id)
    ctx = CollectContext(customer_id=settings.default_customer_id, run_id=1,
                         collected_at=datetime(2024, 3, 15, 12))
    errors = 0
    try:
        for data_type in collector.data_types:
            try:
                for batch in collector.collect(data_type, ctx):
                    for row in batch.rows:
                        check_row(row)
            except DataError:
                errors += 1
    finally:
        collector.close()
    return errors
