"""Every Vultr parser fuzzed: hostile JSON gives a row or a DataError, never another exception.

End to end, a fuzzed account served over HTTP makes a run fail as a DataError (or succeed),
never an internal error or a dead worker.
"""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import vultr_strategies as vs
from fake_vultr import to_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optiinfra_tui.collectors import vultr
from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.errors import DataError
from optiinfra_tui.settings import load_settings

CTX = CollectContext(customer_id="acme", run_id=1, collected_at=datetime(2024, 3, 15, 12))
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

# parser name -> (strategy, call): what bench/faults.py fuzzes too.
PARSERS = {
    "parse_decimal": (vs.json_values, lambda v: vultr.parse_decimal(v, "f")),
    "parse_int": (vs.json_values, lambda v: vultr.parse_int(v, "f", 0)),
    "parse_text": (vs.json_values, lambda v: vultr.parse_text(v, "f", required=True)),
    "parse_id": (vs.json_values, lambda v: vultr.parse_id(v, "f")),
    "parse_datetime": (vs.json_values, lambda v: vultr.parse_datetime(v, "f")),
    "parse_optional_datetime": (vs.json_values,
                                lambda v: vultr.parse_optional_datetime(v, "f")),
    "parse_invoice_item": (vs.charge, lambda v: vultr.parse_invoice_item(
        v, CTX, "42", 0, datetime(2024, 3, 1))),
    "parse_pending_charge": (vs.charge, lambda v: vultr.parse_pending_charge(v, CTX, 0)),
    "parse_account": (vs.account, lambda v: vultr.parse_account(v, CTX)),
    "parse_billing_entry": (vs.billing_entry, lambda v: vultr.parse_billing_entry(v, CTX)),
    "parse_instance": (vs.instance, lambda v: vultr.parse_instance(v, CTX)),
    "resource_name_of": (st.text() | st.sampled_from(vs.TRICKY_TEXT), vultr.resource_name_of),
}


def check_row(row) -> None:
    """What a parser returns is fit to store: exact money, real dates, text."""
    if row is None or isinstance(row, str | int):
        return
    if isinstance(row, Decimal):
        assert row.is_finite() and abs(row) <= 10**12
        return
    if isinstance(row, datetime | date):
        return
    for name in row.__slots__:
        value = getattr(row, name)
        assert not isinstance(value, float), name
        if isinstance(value, Decimal):
            assert value.is_finite() and abs(value) <= 10**12, name


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parser_gives_a_row_or_a_data_error(name):
    strategy, call = PARSERS[name]

    @FUZZ
    @given(strategy)
    def fuzz(value):
        try:
            row = call(value)
        except DataError as exc:
            assert str(exc)
            return
        check_row(row)

    fuzz()


def test_known_edge_cases_are_data_errors():
    # Found by fuzzing: dates at the ends of the calendar, and a huge integral id.
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(DataError):
            vultr.parse_datetime(text, "end_date")
    item = {"description": "x", "total": 1, "end_date": "0001-01-01 00:00:00"}
    with pytest.raises(DataError):
        vultr.parse_pending_charge(item, CTX, 0)
    with pytest.raises(DataError):
        vultr.parse_id(Decimal("1E+5000"), "id")


class _Pages(ThreadingHTTPServer):
    """Serves one fuzzed JSON body per Vultr path; invoice item paths share one body."""

    daemon_threads = True
    bodies: dict[str, bytes] = {}


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


@pytest.fixture(scope="module")
def pages():
    server = _Pages(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def collect_everything(settings_) -> int:
    """Walk each data type of the served account through the real collector and HTTP client.

    Returns how many data types ended in a DataError; any other exception propagates.
    """
    collector = vultr.VultrCollector(settings_, settings_.default_customer_id)
    ctx = CollectContext(customer_id=settings_.default_customer_id, run_id=1,
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


def fuzz_env(tmp_path, url: str) -> dict:
    return {"OPTIINFRA_HOME": str(tmp_path), "VULTR_API_KEY": "fuzz-key-1234",
            "VULTR_API_URL": url, "VULTR_MAX_RPS": "100000"}


def test_collector_over_http_turns_any_body_into_a_data_error(pages, tmp_path):
    settings_ = load_settings(fuzz_env(tmp_path, f"http://127.0.0.1:{pages.server_port}/v2"))

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(vs.account_bodies)
    def fuzz(bodies):
        pages.bodies = {path: to_json(body).encode() for path, body in bodies.items()}
        collect_everything(settings_)

    fuzz()


def test_a_fuzzed_account_fails_the_run_as_data_never_internal(pages, make_env):
    from optiinfra_tui import runs
    from optiinfra_tui.collection import execute_run
    from optiinfra_tui.runtime import Runtime

    env = make_env(VULTR_API_KEY="fuzz-key-1234", VULTR_MAX_RPS="100000",
                   VULTR_API_URL=f"http://127.0.0.1:{pages.server_port}/v2")
    rt = Runtime(load_settings(env))
    rt.history()
    seen = set()

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(vs.account_bodies, st.sampled_from(["cost", "account", "resource"]))
    def fuzz(bodies, data_type):
        pages.bodies = {path: to_json(body).encode() for path, body in bodies.items()}
        run = runs.create_run(rt.settings.default_customer_id, "vultr", (data_type,), "cli",
                              max_attempts=1)
        outcome = execute_run(rt, run.id)
        done = runs.get_run(run.id)
        assert done.status in ("success", "failed"), done.status
        assert done.status == "success" or done.error_kind == "data", done.error_message
        seen.add(outcome.status)

    fuzz()
    assert "failed" in seen


INVOICES = "/billing/invoices"
NO_INVOICES = b'{"billing_invoices": [], "meta": {}}'


@pytest.mark.parametrize("charge", [
    {"description": "x", "total": 1, "end_date": "0001-01-01 00:00:00"},
    {"description": "x", "total": 1, "end_date": "9999-12-31T23:59:59-01:00"},
    {"description": "x", "total": Decimal("1E-999999")},
    {"description": "x", "total": Decimal("1E+999999")},
    {"description": "\ud800", "total": 1},
    {"description": "x", "total": 1, "cursor": "\ud800"},
    {"description": "x\x00y", "total": Decimal("-0.000000001"), "units": Decimal("1E-30")},
])
def test_hostile_pending_charge_end_to_end(pages, make_env, charge):
    """Each of these once crashed a parser or the ClickHouse write (an 'internal' error)."""
    from optiinfra_tui import runs
    from optiinfra_tui.collection import execute_run
    from optiinfra_tui.runtime import Runtime

    env = make_env(VULTR_API_KEY="fuzz-key-1234",
                   VULTR_API_URL=f"http://127.0.0.1:{pages.server_port}/v2")
    rt = Runtime(load_settings(env))
    rt.history()
    pages.bodies = {INVOICES: NO_INVOICES,
                    "/billing/pending-charges": to_json({"pending_charges": [charge]}).encode()}
    if "cursor" in charge:  # a next-page cursor that can't go in a URL
        pages.bodies[INVOICES] = to_json({"billing_invoices": [],
                                          "meta": {"links": {"next": charge["cursor"]}}}).encode()
    run = runs.create_run(rt.settings.default_customer_id, "vultr", ("cost",), "cli", 1)
    execute_run(rt, run.id)
    done = runs.get_run(run.id)
    assert done.status == "success" or done.error_kind == "data", done.error_message
