"""Snapshots of the main screens (pytest-textual-snapshot) from a seeded history at a fixed time.

Update them with `pytest tests/test_tui_snapshots.py --snapshot-update` after a deliberate
change, and look at the report before committing.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from tui_data import SHOWN_SCHEDULE, seed_showcase
from tui_pilot import SIZE, loaded, make_app, make_runtime, select_run, until

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
