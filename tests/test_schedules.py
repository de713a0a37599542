"""Slot arithmetic for interval and cron schedules (pure logic)."""

from datetime import datetime

import pytest

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.schedules import current_slot, next_run, parse_cron
from optiinfra_tui.settings import Schedule

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
