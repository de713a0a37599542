"""Helpers for the dashboard's Pilot tests: a runtime on a fresh data dir, waiting on the UI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tui_data import FrozenSource, StubMetrics, env_for

from optiinfra_tui.settings import load_settings
from optiinfra_tui.tui.app import DashboardApp
from optiinfra_tui.worker.runtime import Runtime

SIZE = (160, 48)


def make_runtime(home, **env: str) -> Runtime:
    rt = Runtime(load_settings(env_for(home, **env)))
    rt.history()
    return rt


def make_app(rt: Runtime, metrics=None, **kw) -> DashboardApp:
    """The real app on real stores; only the clock, latencies and (here) costs are fixed."""
    kw.setdefault("poll", 0.2)
    return DashboardApp(rt, source=FrozenSource(rt, metrics or StubMetrics()), **kw)


async def until(pilot, predicate: Callable[[], object], timeout: float = 15.0) -> object:
    """Let the app run until predicate() is truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


async def loaded(pilot) -> None:
    """The first state, history window and costs have reached the screen."""
    app = pilot.app
    await until(pilot, lambda: app.main.history.page is not None and app.costs is not None
                and app.main.query_one("#stats").children[0].render() is not None)
    await pilot.pause(0.1)


async def select_run(pilot, run_id: int) -> None:
    table = pilot.app.main.history
    await until(pilot, lambda: any(r.id == run_id for r in table.page.rows))
    table.move_cursor(row=[r.id for r in table.page.rows].index(run_id))
    await pilot.pause()


def screen_text(app) -> str:
    """What the active screen shows, as plain text lines."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
