"""Snapshots of the main screens (pytest-textual-snapshot) from a seeded history at a fixed time.

Update them with `pytest tests/test_tui_snapshots.py --snapshot-update` after a deliberate
change, and look at the report before committing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from tui_data import (
    AWS_HEALTH,
    AWS_SCHEDULES,
    FOUR_HEALTH,
    FROZEN_TODAY,
    SHOWN_SCHEDULE,
    FrozenSource,
    OneCustomer,
    seed_alert,
    seed_aws_runs,
    seed_cloud_runs,
    seed_showcase,
)
from tui_pilot import SIZE, loaded, make_app, make_runtime, select_run, until

from optiinfra_tui.tui.app import DashboardApp
from optiinfra_tui.tui.screens.collect import CollectScreen
from optiinfra_tui.tui.screens.costs import CostsScreen
from optiinfra_tui.tui.screens.detail import RunDetailScreen
from optiinfra_tui.tui.screens.help import HelpScreen


def snapshot_home(request) -> Path:
    # A fixed data dir per test: the help screen shows its path, and snapshots must not
    # change (one per test, since the history store stays connected to the last URL).
    home = Path(tempfile.gettempdir()) / "optiinfra-tui-snapshot" / request.node.name
    shutil.rmtree(home, ignore_errors=True)
    return home


def opening(screen: type, open: Callable[[Pilot], Awaitable[object]],
            ready: Callable[[Screen], bool] = lambda _: True, settle: float = 0.2):
    """A run_before: the dashboard loaded, `open(pilot)` done, then `screen` shown and ready."""

    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await loaded(pilot)
        await open(pilot)
        await until(pilot, lambda: isinstance(app.screen, screen) and ready(app.screen))
        await pilot.pause(settle)

    return run_before


async def press_c(pilot: Pilot) -> None:
    await pilot.press("c")


async def open_costs(pilot: Pilot) -> None:
    pilot.app.main.action_costs()


COLLECT = opening(CollectScreen, press_c)
COSTS = opening(CostsScreen, open_costs, settle=0.3)


@pytest.fixture
def seeded_app(request):
    rt = make_runtime(snapshot_home(request), schedules=SHOWN_SCHEDULE,
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
    assert snap_compare(app, terminal_size=SIZE, run_before=COLLECT)


def test_run_detail_of_a_failed_run(snap_compare, seeded_app):
    app, ids = seeded_app

    async def open_detail(pilot):
        await select_run(pilot, ids["transient_failed"])
        await pilot.press("enter")

    run_before = opening(RunDetailScreen, open_detail, ready=lambda s: s.detail is not None)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_costs_view(snap_compare, seeded_app):
    app, _ = seeded_app
    assert snap_compare(app, terminal_size=SIZE, run_before=COSTS)


def test_help(snap_compare, seeded_app):
    app, _ = seeded_app

    async def press_help(pilot):
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=SIZE, run_before=opening(HelpScreen, press_help))


def test_main_screen_with_an_alert_firing(snap_compare, seeded_app):
    app, _ = seeded_app
    seed_alert()
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded)


def test_an_alert_firing_stays_in_the_header_at_80x24(snap_compare, seeded_app):
    app, _ = seeded_app
    seed_alert()
    assert snap_compare(app, terminal_size=(80, 24), run_before=loaded)


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
    rt = make_runtime(snapshot_home(request), schedules=AWS_SCHEDULES)
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
    assert snap_compare(app, terminal_size=SIZE, run_before=COSTS)


def test_collect_modal_on_aws(snap_compare, aws_app):
    app, _ = aws_app

    async def collect_on_aws(pilot):
        from textual.widgets import Select

        await press_c(pilot)
        await until(pilot, lambda: isinstance(app.screen, CollectScreen))
        app.screen.query_one("#provider", Select).value = "aws"

    run_before = opening(CollectScreen, collect_on_aws, settle=0.3)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- all four providers side by side ---------------------------------------------------------


@pytest.fixture
def four_costs(request, four_clouds, runtime, clock, monkeypatch):
    """Real figures of all four providers in the real store, collected for one customer from
    their local doubles as of FROZEN_TODAY (Azure's in EUR: never added to the USD ones)."""
    from four_clouds import PROVIDERS

    from optiinfra_tui.collectors.azure import AzureCollector
    from optiinfra_tui.worker import collection, runs

    clouds = four_clouds(FROZEN_TODAY)
    clock[0] = FROZEN_TODAY
    monkeypatch.setattr(AzureCollector, "clock", staticmethod(lambda: FROZEN_TODAY))
    customer = f"four-{request.node.name.removeprefix('test_')[:40]}".replace("_", "-")
    rt = runtime(DEFAULT_CUSTOMER_ID=customer,
                 **{k: v for k, v in clouds.env.items() if k not in clouds.aws_env})
    for provider in PROVIDERS:
        run = runs.create_run(customer, provider, ("cost",), "cli", rt.settings.max_retries + 1)
        done = collection.run_inline(rt, run.id)
        assert done.status == "success", (provider, done.error_message)
    return OneCustomer(rt.metrics(), customer)


@pytest.fixture
def four_app(request, four_costs):
    rt = make_runtime(snapshot_home(request), schedules=SHOWN_SCHEDULE)
    seed_showcase()
    seed_cloud_runs()
    app = DashboardApp(rt, source=FrozenSource(rt, four_costs, providers=FOUR_HEALTH), poll=0.2)
    yield app
    rt.close()


def test_main_screen_with_four_providers(snap_compare, four_app):
    assert snap_compare(four_app, terminal_size=SIZE, run_before=loaded)


def test_costs_view_with_four_providers(snap_compare, four_app):
    assert snap_compare(four_app, terminal_size=SIZE, run_before=COSTS)
