"""The dashboard through Pilot: every key and screen, on a real history and queue per test."""

from __future__ import annotations

import io
import os
import re
import threading
from datetime import date, datetime
from decimal import Decimal

import pytest
from rich.console import Console
from textual.command import CommandPalette
from textual.widgets import Input, Select
from tui_data import SHOWN_SCHEDULE, UnavailableMetrics, seed_bulk, seed_showcase
from tui_pilot import SIZE, loaded, make_app, make_runtime, screen_text, select_run, until

from optiinfra_tui.storage.history import CollectionRun, ScheduleState
from optiinfra_tui.tui.screens.collect import CollectScreen
from optiinfra_tui.tui.screens.costs import CostsScreen
from optiinfra_tui.tui.screens.detail import RunDetailScreen
from optiinfra_tui.tui.screens.filter import FilterScreen
from optiinfra_tui.tui.screens.help import HelpScreen, render_help
from optiinfra_tui.tui.screens.quitting import QuittingScreen
from optiinfra_tui.worker import runs

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def rt(tmp_path):
    # No agent runs here, so the schedule is only shown (the `p` test pauses it).
    rt = make_runtime(tmp_path / "home", schedules=SHOWN_SCHEDULE)
    yield rt
    rt.close()


@pytest.fixture
def quiet_rt(tmp_path):
    """A runtime whose schedule list is empty: nothing runs that the test didn't ask for."""
    rt = make_runtime(tmp_path / "home", schedules="schedules = []\n")
    yield rt
    rt.close()


@pytest.fixture
def seeded(rt):
    return seed_showcase()


async def open_detail(pilot, run_id: int) -> str:
    """Select a run, press enter, wait for its detail; returns the screen's text."""
    app = pilot.app
    await select_run(pilot, run_id)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                and app.screen.detail is not None and app.screen.detail.run.id == run_id)
    return screen_text(app)


def newest_run() -> CollectionRun:
    return CollectionRun.select().order_by(CollectionRun.id.desc()).first()


async def test_main_screen_shows_every_panel(rt, seeded):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = screen_text(app)
        for expected in ("embedded", "history (sqlite) ● ok", "Workers", "ops-1:4242", "busy",
                         "Queue", "retrying 1", "vultr-cost", "next 12:15:00", "Costs",
                         "$412.58", "History", "config", "Last hour", "success"):
            assert expected in text, expected
        assert app.main.history.row_count == len(app.main.history.page.rows)


@pytest.mark.parametrize("width", [60, 80, 180])
async def test_the_last_hour_strip_never_cuts_a_figure_without_an_ellipsis(rt, seeded, width):
    app = make_app(rt)
    async with app.run_test(size=(width, 30)) as pilot:
        await loaded(pilot)
        line = next(x for x in screen_text(app).splitlines() if x.startswith("│ success"))
        inside = line.strip("│ ")
        wide = "runs/min (peak" in inside
        assert wide == (width >= 180), line  # narrow: the figures alone, no clipped label
        assert wide or inside.endswith("…") or inside.endswith(("rows 0", "ms")) or \
            re.search(r"rows [\d,]+$", inside), line


async def test_enter_opens_run_detail_with_attempts_error_and_advice(rt, seeded):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = await open_detail(pilot, seeded["transient_failed"])
        assert f"Run {seeded['transient_failed']}" in text
        assert "503 Service Unavailable" in text and "What to do" in text
        assert app.screen.query_one("#attempts").row_count == 3
        assert "rows written" in text and "12" in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)


async def test_detail_of_a_failed_config_run_names_the_missing_key(rt, seeded):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await select_run(pilot, seeded["config_failed"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunDetailScreen)
                    and "VULTR_API_KEY" in screen_text(app))


async def test_c_then_enter_queues_a_vultr_cost_collection_for_the_default_customer(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CollectScreen))
        await pilot.press("enter")
        run = await until(pilot, newest_run)
        assert (run.provider, run.customer_id, run.data_types, run.trigger, run.status) == (
            "vultr", "default_customer", "cost", "manual", "queued")
        await until(pilot, lambda: app.main.history.page.rows
                    and app.main.history.page.rows[0].id == run.id)
        assert rt.huey.pending_count() == 1


async def test_collect_modal_choices_and_escape(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CollectScreen))
        await pilot.press("down", "space")  # also tick "account"
        await pilot.press("enter")
        run = await until(pilot, newest_run)
        assert run.data_types == "cost,account"
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CollectScreen))
        await pilot.press("space")  # untick cost: nothing chosen
        await pilot.press("enter")
        assert isinstance(app.screen, CollectScreen)
        assert "at least one" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
        assert CollectionRun.select().count() == 1


async def test_a_queues_every_configured_schedule_now(tmp_path):
    rt = make_runtime(tmp_path / "home", schedules=SHOWN_SCHEDULE, VULTR_API_KEY="a-key")
    app = make_app(rt)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            await pilot.press("a")
            run = await until(pilot, newest_run)
            assert (run.schedule, run.trigger, run.provider) == ("vultr-cost", "manual", "vultr")
    finally:
        rt.close()


async def test_a_without_a_key_queues_nothing_and_names_the_variable(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("a")
        await until(pilot, lambda: any("no credentials: set VULTR_API_KEY" in str(n.message)
                                       for n in app._notifications))
        assert CollectionRun.select().count() == 0


async def test_h_queues_a_health_check(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("h")
        await until(pilot, lambda: rt.huey.pending_count() == 1)
        await until(pilot, lambda: any("Health check queued" in str(n.message)
                                       for n in app._notifications))


async def test_r_retries_the_selected_failed_run_and_is_greyed_on_a_success(rt, seeded):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await select_run(pilot, seeded["success"])
        assert app.main.check_action("retry", ()) is None
        await until(pilot, lambda: "-disabled" in _footer_key(app, "r").classes)
        await pilot.press("r")
        await pilot.pause(0.3)
        assert CollectionRun.select().where(CollectionRun.retry_of.is_null(False)).count() == 0

        await select_run(pilot, seeded["config_failed"])
        assert app.main.check_action("retry", ()) is True
        await until(pilot, lambda: "-disabled" not in _footer_key(app, "r").classes)
        await pilot.press("r")
        retry = await until(pilot, lambda: CollectionRun.get_or_none(
            CollectionRun.retry_of == seeded["config_failed"]))
        assert (retry.trigger, retry.status) == ("retry", "queued")


async def test_x_revokes_the_selected_queued_run_and_is_greyed_on_a_finished_one(rt, seeded):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await select_run(pilot, seeded["success"])
        assert app.main.check_action("revoke", ()) is None
        await select_run(pilot, seeded["queued"])
        assert app.main.check_action("revoke", ()) is True
        await pilot.press("x")
        await until(pilot, lambda: runs.get_run(seeded["queued"]).status == "canceled")
        # The history shows it, and revoke greys out now that the run is final.
        await until(pilot, lambda: app.main.selected.status == "canceled")
        assert app.main.check_action("revoke", ()) is None
        assert app.main.check_action("retry", ()) is True


async def test_slash_filters_by_text_status_provider_customer_and_clears(rt, seeded):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.press(*"VULTR_API_KEY")
        await pilot.press("enter")
        await until(pilot, lambda: [r.id for r in app.main.history.page.rows]
                    == [seeded["config_failed"]])
        assert "text=VULTR_API_KEY" in str(app.main.history.border_title)

        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        app.screen.query_one("#text", Input).value = ""
        app.screen.query_one("#status", Select).value = "failed"
        app.screen.query_one("#provider", Select).value = "vultr"
        app.screen.query_one("#customer", Input).value = "acme"
        await pilot.press("enter")
        await until(pilot, lambda: [r.id for r in app.main.history.page.rows]
                    == [seeded["transient_failed"]])

        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, FilterScreen))
        await pilot.press("ctrl+r")
        await until(pilot, lambda: len(app.main.history.page.rows) > 40)


async def test_p_pauses_and_resumes_schedules(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("p")
        await until(pilot, lambda: ScheduleState.get_or_none(ScheduleState.paused == True))  # noqa: E712
        await until(pilot, lambda: "PAUSED" in screen_text(app))
        await pilot.press("p")
        await until(pilot, lambda: "PAUSED" not in screen_text(app))
        assert not ScheduleState.select().where(ScheduleState.paused == True).count()  # noqa: E712


async def test_tab_moves_between_panels_and_enter_on_costs_opens_the_costs_view(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.focused.id == "history"
        seen = []
        for _ in range(4):
            await pilot.press("tab")
            seen.append(app.focused.id)
        assert {"workers", "queue", "costs", "history"} <= set(seen)
        while app.focused.id != "costs":
            await pilot.press("tab")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CostsScreen)
                    and "412.58" in screen_text(app))
        text = screen_text(app)
        assert "412.58" in text and "Vultr Cloud Compute" in text and "by provider" in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)


async def test_question_mark_shows_help_with_the_log_file(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await until(pilot, lambda: "Log file" in screen_text(app))
        console = Console(width=300, file=io.StringIO())
        console.print(render_help(rt.settings))
        assert re.search(rf"Log file +{re.escape(str(rt.settings.log_path))}",
                         console.file.getvalue())
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)


async def test_ctrl_p_palette_holds_every_action_and_runs_them(rt, seeded):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        titles = [c.title for c in app.get_system_commands(app.main)]
        for title in ("Collect…", "Collect everything now", "Health check", "Retry selected run",
                      "Revoke selected run", "Run detail", "Filter history…",
                      "Pause or resume schedules", "Costs view", "Help", "Quit"):
            assert title in titles
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Collect everything")
        await pilot.pause(0.3)
        await pilot.press("enter")
        # This runtime has no key: the action ran and says what is missing.
        await until(pilot, lambda: any("no credentials: set VULTR_API_KEY" in str(n.message)
                                       for n in app._notifications))


async def test_down_history_database_is_shown_not_a_crash(tmp_path):
    rt = make_runtime(tmp_path / "ok")
    from tui_data import env_for

    from optiinfra_tui.settings import load_settings
    from optiinfra_tui.worker.runtime import Runtime

    down = Runtime(load_settings(env_for(tmp_path / "down",
                                         DATABASE_URL="postgresql://u@127.0.0.1:9/nothing")))
    app = make_app(down)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "history (postgresql) ✖ DOWN" in screen_text(app))
        await until(pilot, lambda: app.main.history.page is not None)
        assert "unreachable" in (app.main.history.border_subtitle or "")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CollectScreen))
        await pilot.press("enter")
        await until(pilot, lambda: any(n.severity == "error" for n in app._notifications))
        assert app.is_running
    rt.close()


async def test_costs_view_tolerates_metrics_being_unavailable(rt):
    app = make_app(rt, metrics=UnavailableMetrics())
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert "metrics unavailable" in screen_text(app)
        app.main.action_costs()
        await until(pilot, lambda: "ClickHouse is unreachable" in screen_text(app))


async def test_costs_view_shows_billed_estimated_total_and_month_to_date_per_currency(
        quiet_rt, chdb_url):
    # Real chDB, read for this test's customer. FROZEN_TODAY is 2026-11-20.
    from tui_data import FROZEN_TODAY, OneCustomer

    from optiinfra_tui.rows import COST_LINES, PENDING_CHARGES, Batch, CostRow
    from optiinfra_tui.storage.metrics import open_metrics

    customer = f"tuicosts{os.getpid()}"

    def line(n, amount, currency, start, end, estimate=False):
        return CostRow(f"{'pending' if estimate else 'inv'}:{n}", customer, "vultr", customer,
                       "" if estimate else "7", Decimal(amount), Decimal(amount), Decimal(amount),
                       Decimal(0), currency, start, end, start.replace(day=1) if estimate
                       else date(2026, 10, 1), "Usage", "line", "Compute", "", "", "",
                       Decimal(1), "Hours", estimate, 1, datetime(2026, 11, 20, 11))

    store = open_metrics(chdb_url)
    try:
        store.write(Batch(COST_LINES, [
            line(0, "31.00", "USD", datetime(2026, 10, 1), datetime(2026, 11, 1)),
            line(1, "12.34", "EUR", datetime(2026, 10, 1), datetime(2026, 11, 1))]))
        store.write(Batch(PENDING_CHARGES, [
            line(2, "30.00", "USD", datetime(2026, 11, 1), datetime(2026, 12, 1), True)]))
        app = make_app(quiet_rt, metrics=OneCustomer(store, customer))
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            # The chart's days: October's invoice and November's estimate, spread per day.
            usd = {d: v for d, p, c, v in app.costs.by_day if c == "USD"}
            assert len(usd) == 30 and usd[FROZEN_TODAY] == Decimal("1.00")
            assert usd[date(2026, 10, 22)] == Decimal("1.00")
            # Month to date: 20 of November's 30 days of the estimate, not the estimate.
            assert "MTD $20.00  est. $30.00" in screen_text(app)
            app.main.action_costs()
            await until(pilot, lambda: isinstance(app.screen, CostsScreen)
                        and "month to date" in screen_text(app))
            lines = [t.split() for t in screen_text(app).splitlines()]
            # A column per currency (never added together, named by its head), each figure
            # with its meaning.
            assert ["USD", "EUR"] in lines
            rows = {t[0]: t[1:] for t in lines if t and t[0] in ("billed", "estimated", "total")}
            assert rows["billed"][:2] == ["31.00", "12.34"]
            assert rows["billed"][2:5] == ["invoice", "lines,", "every"]
            assert rows["estimated"][:4] == ["30.00", "0.00", "pending", "charges"]
            assert rows["total"][:2] == ["61.00", "12.34"]
            mtd = next(t for t in lines if t[:3] == ["month", "to", "date"])
            # 20 of November's 30 days of the estimate, not the estimate itself.
            assert mtd[3:10] == ["20.00", "0.00", "11-01", "to", "11-20:", "each", "charge"]
            text = screen_text(app)
            assert "EUR per day" in text and "USD per day" in text
    finally:
        store.close()


LONG_MESSAGE = ("VULTR_API_KEY is not set: the vultr API key for customer "
                "'a-customer-with-a-long-name' is missing. Export VULTR_API_KEY=<key>.")


def seed_cut_values() -> dict[str, int]:
    """Runs whose values don't fit: a long customer, three types stored out of order, a final
    config failure after one of four attempts, and a retrying run."""
    from tui_data import FROZEN_NOW, _run

    failed = CollectionRun.insert(_run(
        3, FROZEN_NOW, "failed", customer_id="a-customer-with-a-long-name",
        data_types="account,resource,cost", trigger="manual", attempt=1, max_attempts=4,
        error_kind="config", error_message=LONG_MESSAGE)).execute()
    retrying = CollectionRun.insert(_run(
        2, FROZEN_NOW, "retrying", attempt=1, max_attempts=4, error_kind="transient",
        error_message="Vultr answered 429 Too Many Requests")).execute()
    return {"failed": failed, "retrying": retrying}


def shown_cells(table) -> list[list[str]]:
    """Each row's text per column, read back from the one line the table shows per run."""
    return [columns_of(table.get_row_at(i)[0].plain, table.fitted)
            for i in range(table.row_count)]


def columns_of(text: str, layout) -> list[str]:
    out, pos = [], 0
    for _, _, width in layout:  # each column: its width, one cell of padding either side
        out.append(text[pos + 1:pos + 1 + width].strip())
        pos += width + 2
    return out


def full_values(run) -> dict[str, str]:
    """What each column would show with room enough."""
    from optiinfra_tui.formats import duration

    return {"id": str(run.id), "status": run.status, "provider": run.provider,
            "customer": run.customer_id, "types": "cost,account,resource"
            if run.data_types.count(",") == 2 else run.data_types, "trigger": run.trigger,
            "try": "1/1" if run.status == "failed" else f"{run.attempt}/{run.max_attempts}",
            "rows": f"{run.rows:,}", "took": duration(run.duration_ms),
            "queued": f"{run.queued_at:%m-%d %H:%M:%S}",
            "error": f"{run.error_kind}: {run.error_message}" if run.error_kind else ""}


@pytest.mark.parametrize("size,hidden", [
    ((180, 50), []),
    ((120, 40), ["TRIGGER", "TRY", "TOOK", "PROVIDER"]),
    ((80, 24), ["TRIGGER", "TRY", "TOOK", "PROVIDER", "ROWS", "TYPES", "CUSTOMER"]),
])
async def test_history_cuts_cells_with_an_ellipsis_and_drops_whole_columns(quiet_rt, size,
                                                                           hidden):
    ids = seed_cut_values()
    app = make_app(quiet_rt)
    async with app.run_test(size=size) as pilot:
        await loaded(pilot)
        table = app.main.history
        # The columns fit the panel: nothing is cut off by its edge.
        assert table.virtual_size.width <= table.scrollable_content_region.width
        keys = [key for key, _, _ in table.fitted]
        assert table.hidden == tuple(hidden)
        assert columns_of(next(iter(table.columns.values())).label.plain,
                          table.fitted) == [label for _, label, _ in table.fitted]
        assert table.fitted[-1][1] == "ERROR"
        for run, cells in zip(table.page.rows, shown_cells(table), strict=True):
            full = full_values(run)
            for key, cell in zip(keys, cells, strict=True):
                whole = " ".join(full[key].split())
                # Whole, or a start of it that ends in "…" (a message cut at a word).
                assert cell == whole or (cell.endswith("…") and whole.startswith(
                    cell[:-1].rstrip(" ,;:-"))), (key, cell, whole)
        text = screen_text(app)
        if hidden:
            assert f"{len(hidden)} columns hidden, enter: all of a run" in text
        failed = next(c for r, c in zip(table.page.rows, shown_cells(table), strict=True)
                      if r.id == ids["failed"])
        # The error column shows the message's first words, not only the kind.
        assert failed[keys.index("error")].startswith("config: VULTR_API_KEY is")
        if size[0] >= 180:
            assert failed[keys.index("types")] == "cost,account,resource"
            assert failed[keys.index("try")] == "1/1"
            assert failed[keys.index("customer")] == "a-customer-with…"


async def test_history_refits_its_columns_when_the_terminal_is_resized(quiet_rt):
    seed_cut_values()
    app = make_app(quiet_rt)
    async with app.run_test(size=(180, 50)) as pilot:
        await loaded(pilot)
        table = app.main.history
        await select_run(pilot, table.page.rows[1].id)
        wide = table.fitted[-1][2]
        await pilot.resize_terminal(80, 24)
        await until(pilot, lambda: "types" not in [k for k, _, _ in table.fitted])
        assert table.fitted[-1][2] < wide and table.cursor_row == 1
        assert table.virtual_size.width <= table.scrollable_content_region.width
        await pilot.resize_terminal(180, 50)
        await until(pilot, lambda: table.fitted[-1][2] == wide)
        assert not table.hidden and table.cursor_row == 1


async def test_detail_of_a_final_failure_says_no_attempt_will_follow(quiet_rt):
    ids = seed_cut_values()
    app = make_app(quiet_rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = await open_detail(pilot, ids["failed"])
        assert "1/1 (final: config errors are not retried)" in text
        assert "[cost,account,resource]" in text and "1 of 4" not in text
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main)
        assert "attempts      1 of 4" in await open_detail(pilot, ids["retrying"])


async def test_history_pages_by_key_through_a_long_history(rt):
    seed_bulk(350)
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.main.history
        assert [r.id for r in table.page.rows][:1] == [350] and table.row_count == 100
        await pilot.press("end", "down")
        await until(pilot, lambda: table.page.query.page == 1)
        assert table.page.rows[0].id == 250 and table.cursor_row == 0 and table.row_count == 100
        await pilot.press("pagedown")
        await pilot.press("end", "pagedown", "end", "down")
        await until(pilot, lambda: table.page.query.page == 3)
        assert [r.id for r in table.page.rows] == list(range(50, 0, -1))
        assert not table.page.has_more
        await pilot.press("home", "up")
        await until(pilot, lambda: table.page.query.page == 2)
        assert table.selected.id == 51
        await pilot.press("ctrl+home")
        await until(pilot, lambda: table.page.query.page == 0)
        assert table.selected.id == 350


async def test_worker_activity_reaches_the_workers_panel_without_waiting_for_a_poll(rt):
    # Slow polling: only the activity message can bring it before the next poll. (The
    # latency itself, well under half a second, is a figure from bench/bench_dashboard.py.)
    app = make_app(rt, poll=5.0)
    rt.activity.register("Worker-1")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.pause(0.3)
        t = threading.Thread(target=rt.activity.began, args=(7, "vultr/default_customer cost"),
                             name="Worker-1")
        t.start()
        t.join()
        await until(pilot, lambda: "busy" in screen_text(app), timeout=2.0)


class SlowPool:
    """A pool with one task in flight that ends after `seconds`: quitting must wait for it."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.stopped, self.done = seconds, threading.Event(), threading.Event()

    def in_flight(self) -> int:
        return 0 if self.done.is_set() else 1

    def stop(self, timeout: float) -> bool:
        self.stopped.set()
        finished = self.done.wait(min(self.seconds, timeout)) or self.seconds <= timeout
        self.done.set()
        return finished


async def test_q_with_a_task_in_flight_says_so_and_waits(rt):
    pool = SlowPool(0.8)
    app = make_app(rt, pool=pool, shutdown_timeout=5)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, QuittingScreen))
        assert "waiting for 1 task in flight" in screen_text(app)
        await until(pilot, lambda: not app.is_running, timeout=5)
    assert pool.stopped.is_set() and app.pool_stopped


async def test_q_without_tasks_exits_at_once(rt):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, timeout=2)


def _footer_key(app, key: str):
    from textual.widgets._footer import FooterKey

    return next(k for k in app.main.query(FooterKey) if k.key == key)


def colours_of(app, word: str) -> set[str]:
    """The foreground colours (#rrggbb) the screen draws `word` (a cell, or what begins a
    segment) in, as rendered."""
    return {seg.style.color.get_truecolor().hex.upper()
            for strip in app.screen._compositor.render_strips() for seg in strip
            if seg.style and seg.style.color
            and (seg.text.strip() == word or seg.text.strip().startswith(word + " "))}


async def test_states_take_their_colours_from_the_current_theme(rt, seeded, tmp_path):
    app = make_app(rt)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        seen = []
        for theme in ("textual-light", "nord"):
            app.theme = theme
            error = app.get_css_variables()["text-error"].upper()
            # A failed run's STATUS cell, redrawn without waiting for new data.
            await until(pilot, lambda e=error: e in colours_of(app, "failed"))
            seen.append(error)
        assert seen[0] != seen[1] and seen[0] not in colours_of(app, "failed")

    from tui_data import env_for

    from optiinfra_tui.settings import load_settings
    from optiinfra_tui.worker.runtime import Runtime

    down = Runtime(load_settings(env_for(tmp_path / "down",
                                         DATABASE_URL="postgresql://u@127.0.0.1:9/nothing")))
    app = make_app(down)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "✖ DOWN" in screen_text(app))
        for theme in ("textual-dark", "textual-light"):
            app.theme = theme
            error = app.get_css_variables()["text-error"].upper()
            await until(pilot, lambda e=error: e in colours_of(app, "✖ DOWN"))


def test_no_colour_is_hard_coded_in_the_dashboard_but_the_providers():
    from pathlib import Path

    import optiinfra_tui.tui as tui

    found = [f"{path.name}:{n}: {line.strip()}"
             for path in Path(tui.__file__).parent.rglob("*.*") if path.suffix in (".py", ".tcss")
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"#[0-9a-fA-F]{6}\b", line) and "PROVIDER_COLOURS = " not in line]
    assert not found, found


def test_a_consumer_with_many_threads_shows_its_busy_ones_and_counts_the_idle():
    from dataclasses import replace

    from optiinfra_tui.tui.widgets.workers import shown
    from optiinfra_tui.worker.monitor import WorkerInfo

    at = datetime(2026, 1, 1, 12, 0, 0)
    idle = WorkerInfo("vm:1", "vm", 1, "headless", "Worker-1", "idle", "", None, at, 3, 1, at)
    big = [replace(idle, thread=f"Worker-{i}", processed=i) for i in range(1, 65)]
    big[10] = replace(big[10], state="busy", task="vultr/c7 cost", since=at.replace(second=9))
    big[20] = replace(big[20], state="busy", task="vultr/c8 cost", since=at.replace(second=5))
    small = [replace(idle, consumer_id="vm:2", pid=2, thread=f"Worker-{i}") for i in (1, 2)]
    rows = shown(big + small)
    assert [(w.thread, w.state, w.task) for w in rows] == [
        ("Worker-21", "busy", "vultr/c8 cost"), ("Worker-11", "busy", "vultr/c7 cost"),
        ("62 idle", "idle", "62 idle threads"), ("Worker-1", "idle", ""), ("Worker-2", "idle", "")]
    assert rows[2].processed == sum(range(1, 65)) - 11 - 21


def test_thousands_of_provider_checks_count_the_healthy_and_name_those_in_trouble():
    from optiinfra_tui.tui.widgets.header import render_header
    from optiinfra_tui.worker.health import Health

    now = datetime(2026, 1, 1, 12, 0, 0)
    checks = [Health(f"vultr:c{i:05d}", True, None, "ok", now, 60.0) for i in range(10_000)]
    checks[4321] = Health("vultr:c04321", False, None, "HTTP 401: key refused", now, 60.0)
    checks[7] = Health("vultr:c00007", True, None, "ok", datetime(2026, 1, 1, 11, 57), 60.0)
    text = render_header("distributed", {}, [Health(n, True, 1.0) for n in
                                            ("queue", "history", "metrics")] + checks,
                         [], now=now).plain
    assert "vultr:c04321 ✖ DOWN HTTP 401: key refused" in text
    assert "vultr ● ok ×9,999 oldest 3m ago" in text  # overdue, yet healthy: counted
    assert "c00001" not in text and "c00007" not in text
