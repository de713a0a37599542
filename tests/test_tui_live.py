"""The dashboard end to end in-process: embedded workers, the fake Vultr API, real chDB."""

from __future__ import annotations

import os

import pytest
from tui_pilot import SIZE, make_runtime, screen_text, until

from optiinfra_tui.tui.app import DashboardApp
from optiinfra_tui.tui.screens.detail import RunDetailScreen
from optiinfra_tui.worker.pool import WorkerPool

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_c_enter_runs_a_vultr_collection_live_and_costs_come_from_chdb(
        tmp_path, fake_vultr, chdb_url):
    rt = make_runtime(tmp_path / "home", VULTR_API_KEY=fake_vultr.token,
                      VULTR_API_URL=fake_vultr.url, CLICKHOUSE_URL=chdb_url,
                      DEFAULT_CUSTOMER_ID=f"tui{os.getpid()}")
    pool = WorkerPool(rt, 1, "dashboard")
    pool.start()
    app = DashboardApp(rt, pool=pool, poll=1.0, shutdown_timeout=10)
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = app.main.history
            await until(pilot, lambda: table.page is not None)
            await pilot.press("c")
            await pilot.pause(0.2)
            await pilot.press("enter")
            run = await until(pilot, lambda: table.page.rows and table.page.rows[0]
                              .status == "success" and table.page.rows[0], timeout=15)
            assert run.rows == fake_vultr.line_count() and run.provider == "vultr"
            assert "success" in screen_text(app)
            # The costs panel read the rows back from chDB.
            await until(pilot, lambda: app.costs is not None and app.costs.error is None
                        and app.costs.summary, timeout=15)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                        and app.screen.detail is not None)
            assert f"{run.rows:,}" in screen_text(app)
            await pilot.press("escape")
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, timeout=10)
        assert app.pool_stopped
    finally:
        if not app.pool_stopped:
            pool.stop(5)
        rt.close()


async def test_without_a_key_the_run_fails_and_its_detail_names_vultr_api_key(tmp_path):
    rt = make_runtime(tmp_path / "home", CLICKHOUSE_URL="http://127.0.0.1:9/")
    pool = WorkerPool(rt, 1, "dashboard")
    pool.start()
    app = DashboardApp(rt, pool=pool, poll=1.0, shutdown_timeout=10,
                       costs_enabled=False, costs_disabled_reason="not in this test")
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = app.main.history
            await until(pilot, lambda: table.page is not None)
            await pilot.press("c")
            await pilot.pause(0.2)
            await pilot.press("enter")
            await until(pilot, lambda: table.page.rows and table.page.rows[0].status == "failed",
                        timeout=10)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                        and "VULTR_API_KEY" in screen_text(app))
            await pilot.press("escape", "q")
            await until(pilot, lambda: not app.is_running, timeout=10)
    finally:
        if not app.pool_stopped:
            pool.stop(5)
        rt.close()
