"""Every Vultr parser fuzzed: hostile JSON gives a row or a DataError, never another exception.

End to end, a fuzzed account served over HTTP makes a run fail as a DataError (or succeed),
never an internal error or a dead worker.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import vultr_fuzz as vf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optiinfra_tui.collectors import fields, vultr
from optiinfra_tui.errors import DataError
from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import runs
from optiinfra_tui.worker.collection import execute_run
from optiinfra_tui.worker.runtime import Runtime


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(vf.PARSERS))
def test_parser_gives_a_row_or_a_data_error(name):
    strategy, call = vf.PARSERS[name]

    @fuzz_settings(300)
    @given(strategy)
    def fuzz(value):
        try:
            row = call(value)
        except DataError as exc:
            assert str(exc)
            return
        vf.check_row(row)

    fuzz()


def test_known_edge_cases_are_data_errors():
    # Found by fuzzing: dates past the calendar's ends, and a huge integral id.
    for text in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        with pytest.raises(DataError):
            fields.parse_datetime(text, "end_date")
    item = {"description": "x", "total": 1, "end_date": "0001-01-01 00:00:00"}
    with pytest.raises(DataError):
        vultr.parse_pending_charge(item, vf.CTX, 0)
    with pytest.raises(DataError):
        fields.parse_id(Decimal("1E+5000"), "id")
    with pytest.raises(DataError):
        fields.parse_text("\ud800", "description")


@pytest.fixture(scope="module")
def pages():
    server = vf.PageServer()
    yield server
    server.close()


def runtime(make_env, pages) -> Runtime:
    rt = Runtime(load_settings(make_env(VULTR_API_KEY="fuzz-key-1234", VULTR_API_URL=pages.url,
                                        VULTR_MAX_RPS="100000")))
    rt.history()
    return rt


def test_collector_over_http_turns_any_body_into_a_data_error(pages, tmp_path):
    settings_ = load_settings({"OPTIINFRA_HOME": str(tmp_path), "VULTR_API_KEY": "fuzz-key-1234",
                               "VULTR_API_URL": pages.url, "VULTR_MAX_RPS": "100000"})

    @fuzz_settings(150)
    @given(vf.account_bodies)
    def fuzz(bodies):
        pages.serve(bodies)
        vf.collect_everything(settings_)

    fuzz()


def test_a_fuzzed_account_fails_the_run_as_data_never_internal(pages, make_env):
    rt = runtime(make_env, pages)
    seen = set()

    @fuzz_settings(40)
    @given(vf.account_bodies, st.sampled_from(["cost", "account", "resource"]))
    def fuzz(bodies, data_type):
        pages.serve(bodies)
        run = runs.create_run(rt.settings.default_customer_id, "vultr", (data_type,), "cli", 1)
        execute_run(rt, run.id)
        done = runs.get_run(run.id)
        assert done.status in ("success", "failed"), done.status
        assert done.status == "success" or done.error_kind == "data", done.error_message
        seen.add(done.status)

    fuzz()
    assert "failed" in seen


NO_INVOICES = {"billing_invoices": [], "meta": {}}


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
    rt = runtime(make_env, pages)
    invoices = dict(NO_INVOICES)
    if "cursor" in charge:  # a next-page cursor that can't go in a URL
        invoices["meta"] = {"links": {"next": charge["cursor"]}}
    pages.serve({"/billing/invoices": invoices,
                 "/billing/pending-charges": {"pending_charges": [charge]}})
    run = runs.create_run(rt.settings.default_customer_id, "vultr", ("cost",), "cli", 1)
    execute_run(rt, run.id)
    done = runs.get_run(run.id)
    assert done.status == "success" or done.error_kind == "data", done.error_message
