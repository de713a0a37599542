"""A test owns its clock and its schedules: slots fall due when the test's clock says so,
and the environments tests build carry only the schedules they ask for."""

from __future__ import annotations

from datetime import datetime, timedelta

from tui_data import SHOWN_SCHEDULE
from tui_pilot import make_runtime

from optiinfra_tui.storage.history import ScheduleSlot
from optiinfra_tui.worker.agent import ConsumerAgent

BOUNDARY = datetime(2026, 11, 30, 9, 45)  # a 15-minute slot starts here


def _agent_at(rt, moments: list[datetime]) -> ConsumerAgent:
    clock = iter(moments)
    return ConsumerAgent(rt, "test", threads=0, clock=lambda: next(clock))


def test_test_environments_carry_no_schedule_they_did_not_ask_for(tmp_path):
    rt = make_runtime(tmp_path / "home", VULTR_API_KEY="k-clock-test")
    try:
        assert rt.settings.schedules == ()
        agent = _agent_at(rt, [BOUNDARY + timedelta(seconds=1)])
        agent.tick()  # the default 15-minute schedule would claim this slot
        assert ScheduleSlot.select().count() == 0
        assert rt.huey.pending_count() == 0
    finally:
        rt.close()


def test_an_asked_for_schedule_runs_its_slot_once_by_the_injected_clock(tmp_path):
    rt = make_runtime(tmp_path / "home", schedules=SHOWN_SCHEDULE, VULTR_API_KEY="k-clock-test")
    try:
        agent = _agent_at(rt, [BOUNDARY - timedelta(milliseconds=300),
                               BOUNDARY + timedelta(milliseconds=200),
                               BOUNDARY + timedelta(seconds=1)])
        agent.tick()  # 09:44:59.7: the 09:30 slot is long past, nothing is due
        assert ScheduleSlot.select().count() == 0
        agent.tick()  # 09:45:00.2: the slot is due and claimed
        agent.tick()  # 09:45:01: already claimed, not again
        assert [(s.schedule, s.slot) for s in ScheduleSlot.select()] == [("vultr-cost", BOUNDARY)]
        assert rt.huey.pending_count() == 1
    finally:
        rt.close()
