"""Snapshots of the main screens (pytest-textual-snapshot) from a seeded history at a fixed time.

Update them with `pytest tests/test_tui_snapshots.py --snapshot-update` after a deliberate
change, and look at the report before committing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from tui_data import (
    AWS_HEALTH,
    AWS_SCHEDULES,
    FROZEN_TODAY,
    SHOWN_SCHEDULE,
    FrozenSource,
    OneCustomer,
    seed_aws_runs,
    seed_showcase,
)
from tui_pilot import SIZE, loaded, make_app, make_runtime, select_run, until

from optiinfra_tui.tui.app import DashboardApp
from optiinfra_tui.tui.screens.collect import CollectScreen
from optiinfra_tui.tui.screens.costs import CostsScreen
from optiinfra_tui.tui.screens.detail import RunDetailScreen
from optiinfra_tui.tui.screens.help import HelpScreen


@pytest.fixture
def seeded_app(request):
    # A fixed data dir per test: the help screen shows its path, and snapshots must not
    # change (one per test, since the history store stays connected to the last URL).
    home = Path(tempfile.gettempdir()) / "optiinfra-tui-snapshot" / request.node.name
    shutil.rmtree(home, ignore_errors=True)
    rt = make_runtime(home, schedules=SHOWN_SCHEDULE,
                      VULTR_API_KEY="snapshot-key")  # a configured user's screens
    ids = seed_showcase()
    app = make_app(rt)
    yield app, ids
    rt.close()


def test_main_screen(snap_compare, seeded_app):
    app, _ = seeded_app
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded)


def test_collect_modal(snap_compare, seeded_app):
    app, _ = seeded_app

    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CollectScreen))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_run_detail_of_a_failed_run(snap_compare, seeded_app):
    app, ids = seeded_app

    async def run_before(pilot):
        await loaded(pilot)
        await select_run(pilot, ids["transient_failed"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                    and app.screen.detail is not None)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_costs_view(snap_compare, seeded_app):
    app, _ = seeded_app

    async def run_before(pilot):
        await loaded(pilot)
        app.main.action_costs()
        await until(pilot, lambda: isinstance(app.screen, CostsScreen))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare, seeded_app):
    app, _ = seeded_app

    async def run_before(pilot):
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- AWS beside Vultr -------------------------------------------------------------------------

AWS_CUSTOMER = "aws-snapshot"


@pytest.fixture
def aws_costs(runtime, aws, clock):
    """Real AWS figures in the real store: November's first 19 days collected from the local
    Cost Explorer (estimates: the month is open), read back for the snapshot's customer."""
    from datetime import date, timedelta

    from aws_fixtures import collect
    from aws_truth import ce_pages, seeded_truth

    truth = seeded_truth(date(2026, 11, 1), 19)
    days = {date(2026, 11, 1) + timedelta(days=n) for n in range(19)}
    aws.inject_ce(ce_pages(truth, estimated=days))
    clock[0] = FROZEN_TODAY
    rt = runtime(DEFAULT_CUSTOMER_ID=AWS_CUSTOMER)
    assert collect(rt).status == "success"
    return OneCustomer(rt.metrics(), AWS_CUSTOMER)


@pytest.fixture
def aws_app(request, aws_costs):
    home = Path(tempfile.gettempdir()) / "optiinfra-tui-snapshot" / request.node.name
    shutil.rmtree(home, ignore_errors=True)
    rt = make_runtime(home, schedules=AWS_SCHEDULES)
    ids = seed_showcase()
    ids.update(seed_aws_runs())
    app = DashboardApp(rt, source=FrozenSource(rt, aws_costs, providers=AWS_HEALTH), poll=0.2)
    yield app, ids
    rt.close()


def test_main_screen_with_aws(snap_compare, aws_app):
    app, _ = aws_app
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded)


def test_costs_view_with_aws(snap_compare, aws_app):
    app, _ = aws_app

    async def run_before(pilot):
        await loaded(pilot)
        app.main.action_costs()
        await until(pilot, lambda: isinstance(app.screen, CostsScreen))
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_collect_modal_on_aws(snap_compare, aws_app):
    app, _ = aws_app

    async def run_before(pilot):
        from textual.widgets import Select

        await loaded(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CollectScreen))
        app.screen.query_one("#provider", Select).value = "aws"
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
