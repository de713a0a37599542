"""Slot arithmetic for interval and cron schedules (pure logic)."""

from datetime import datetime, timedelta

import pytest

from optiinfra_tui.cron import parse_cron
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import Schedule
from optiinfra_tui.worker.schedules import MAX_LATENESS, current_slot, next_run

EVERY_15 = Schedule("c", "vultr", ("cost",), interval=900)


def test_interval_slots_align_to_the_epoch():
    assert current_slot(EVERY_15, datetime(2026, 1, 1, 10, 15, 40)) == datetime(2026, 1, 1, 10, 15)
    assert next_run(EVERY_15, datetime(2026, 1, 1, 10, 15, 40)) == datetime(2026, 1, 1, 10, 30)


def test_a_slot_long_past_is_not_run_late():
    # Started at 10:22: the 10:15 slot is skipped, the next one is 10:30.
    assert current_slot(EVERY_15, datetime(2026, 1, 1, 10, 22)) is None


def test_cron_slots():
    nightly = Schedule("n", "vultr", ("resource",), cron="30 2 * * 1-5")
    assert current_slot(nightly, datetime(2026, 11, 30, 2, 30, 10)) == datetime(2026, 11, 30, 2, 30)
    assert current_slot(nightly, datetime(2026, 11, 29, 2, 30, 10)) is None  # a Sunday
    assert next_run(nightly, datetime(2026, 11, 28, 12, 0)) == datetime(2026, 11, 30, 2, 30)


def test_bad_cron():
    with pytest.raises(ConfigError):
        parse_cron("every day")
    with pytest.raises(ConfigError):
        parse_cron("* 25 * * *")


MONTHLY = Schedule("monthly", "vultr", ("cost",), cron="0 2 1 * *")
YEARLY = Schedule("yearly", "vultr", ("cost",), cron="0 3 1 1 *")


def test_monthly_and_yearly_crons_have_a_next_run():
    now = datetime(2026, 3, 14, 9, 26, 53)
    assert next_run(MONTHLY, now) == datetime(2026, 4, 1, 2, 0)
    assert next_run(YEARLY, now) == datetime(2027, 1, 1, 3, 0)
    # On the slot itself, the next run is the following one.
    assert next_run(MONTHLY, datetime(2026, 4, 1, 2, 0)) == datetime(2026, 5, 1, 2, 0)
    assert next_run(YEARLY, datetime(2026, 12, 31, 23, 59, 59)) == datetime(2027, 1, 1, 3, 0)


def test_monthly_and_yearly_next_runs_show_in_the_queue_panel():
    from optiinfra_tui.tui.widgets.queue import render_queue
    from optiinfra_tui.worker.monitor import ScheduleInfo

    now = datetime(2026, 3, 14, 9, 26, 53)
    info = [ScheduleInfo(name=s.name, provider=s.provider, data_types=s.data_types,
                         every=f"cron {s.cron}", next_run=next_run(s, now), last_slot=None,
                         paused=False) for s in (MONTHLY, YEARLY, EVERY_15)]
    text = render_queue(None, info, now=now).plain
    assert "next 2026-04-01 02:00" in text
    assert "next 2027-01-01 03:00" in text
    assert "next 09:30:00" in text  # within a day: the time of day is enough


def test_day_of_month_and_day_of_week_are_ored_as_in_standard_cron():
    # The 13th and every Friday. January 2026: the 13th is a Tuesday; Fridays are 2, 9, 16...
    friday_13 = Schedule("f13", "vultr", ("cost",), cron="0 0 13 * 5")
    runs, t = [], datetime(2026, 1, 1)
    for _ in range(6):
        t = next_run(friday_13, t)
        runs.append(t.day)
    assert runs == [2, 9, 13, 16, 23, 30]
    assert current_slot(friday_13, datetime(2026, 1, 13, 0, 0, 30)) == datetime(2026, 1, 13)
    assert current_slot(friday_13, datetime(2026, 1, 16, 0, 1)) == datetime(2026, 1, 16)
    assert current_slot(friday_13, datetime(2026, 1, 14, 0, 0, 30)) is None
    # With `*` as the day of month, only the day of week counts: midnight on Fridays.
    fridays = Schedule("fri", "vultr", ("cost",), cron="0 0 * * 5")
    assert next_run(fridays, datetime(2026, 1, 2, 0, 0)) == datetime(2026, 1, 9)


def test_a_cron_slot_is_due_until_max_lateness_has_passed():
    nightly = Schedule("n", "vultr", ("resource",), cron="0 2 * * *")
    slot = datetime(2026, 11, 29, 2, 0)
    assert current_slot(nightly, slot) == slot  # exactly on time
    assert current_slot(nightly, slot + timedelta(seconds=90)) == slot  # a slow tick or restart
    assert current_slot(nightly, slot + MAX_LATENESS) == slot
    assert current_slot(nightly, slot + MAX_LATENESS + timedelta(seconds=1)) is None
    assert current_slot(nightly, slot - timedelta(seconds=1)) is None


def test_cron_errors_name_the_field():
    with pytest.raises(ConfigError, match=r"'61 \* \* \* \*' is not valid \(Bad minute\)"):
        parse_cron("61 * * * *", "schedules[0]")
    with pytest.raises(ConfigError, match="Bad day-of-month"):
        parse_cron("0 0 31 2 *")  # February never has a 31st
    with pytest.raises(ConfigError, match="5 fields"):
        parse_cron("0 0 0 * * *")  # seconds are not cron


def test_queue_panel_lines_fit_its_width_and_end_in_an_ellipsis_where_cut():
    from optiinfra_tui.formats import cell_width
    from optiinfra_tui.tui.widgets.queue import WIDTH, render_queue
    from optiinfra_tui.worker.monitor import QueueInfo, ScheduleInfo

    now = datetime(2026, 3, 14, 9, 26, 53)
    queue = QueueInfo(pending=0, scheduled=[], retrying=[
        (10_000, "vultr/default_customer cost", datetime(2026, 3, 14, 9, 30))])
    info = [ScheduleInfo(name="a-schedule-with-a-long-name", provider="vultr",
                         data_types=("cost",), every="cron 0 0 1 1 *", next_run=now,
                         last_slot=None, paused=False)]
    lines = render_queue(queue, info, now=now).plain.split("\n")
    assert all(cell_width(line) <= WIDTH for line in lines), lines
    retrying = next(line for line in lines if "↻" in line)
    assert retrying.startswith(" ↻ run 10000 at 09:30:00 vultr/") and retrying.endswith("…")
    assert any(line.startswith(" a-schedule-with-a-l… cron 0 0 1…") for line in lines), lines
