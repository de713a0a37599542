"""Scheduled fan-outs skip customers without credentials, and the dashboard and `status`
say so where the schedule is listed; a manual collection still fails at once with the fix."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from textual.widgets import Static
from tui_data import SHOWN_SCHEDULE, env_for
from tui_pilot import SIZE, loaded, make_app, make_runtime, until

from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage.history import CollectionRun
from optiinfra_tui.tui.widgets.queue import QueuePanel
from optiinfra_tui.worker import runs
from optiinfra_tui.worker.agent import ConsumerAgent
from optiinfra_tui.worker.runtime import Runtime

CLI = [sys.executable, "-m", "optiinfra_tui.cli"]
# The test's own schedule and clock: a slot that falls due at SLOT, whatever the time is.
SCHEDULE = '[[schedules]]\nname = "vultr-cost"\ndata_types = ["cost"]\ninterval = 900\n'
SLOT = datetime(2026, 11, 20, 9, 45)


def run_slot(env: dict) -> list[CollectionRun]:
    """Tick one consumer at a due slot and run the fan-out task it queued."""
    rt = Runtime(load_settings(env))
    rt.history()
    ConsumerAgent(rt, "test", threads=0, clock=lambda: SLOT + timedelta(seconds=3)).tick()
    task = rt.huey.dequeue()
    assert task is not None and task.name == "scheduled_collection_task"
    rt.huey.execute(task)
    return runs.list_runs()


@pytest.fixture
def scheduled_env(make_env, tmp_path):
    cfg = tmp_path / "schedule.toml"
    cfg.write_text(SCHEDULE + '[customers.acme]\nvultr_api_key_env = "ACME_VULTR_KEY"\n')
    return lambda **extra: make_env(OPTIINFRA_CONFIG=str(cfg), **extra)


def test_a_scheduled_slot_creates_no_run_for_a_customer_without_a_key(scheduled_env):
    assert run_slot(scheduled_env()) == []


def test_a_scheduled_slot_creates_one_run_per_customer_with_a_key(scheduled_env):
    env = scheduled_env(ACME_VULTR_KEY="acme-key", VULTR_API_KEY=" ")  # blank is unset
    (run,) = run_slot(env)
    assert (run.customer_id, run.trigger, run.schedule, run.status) == (
        "acme", "schedule", "vultr-cost", "queued")


def test_status_names_the_variable_a_skipped_customer_needs(tmp_path):
    env = env_for(tmp_path / "home", schedules=SCHEDULE)
    out = subprocess.run(CLI + ["status"], env=env, capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    at = next(i for i, x in enumerate(lines) if x.strip().startswith("vultr-cost"))
    assert lines[at + 1].strip() == "no credentials: set VULTR_API_KEY", out.stdout
    out = subprocess.run(CLI + ["status"], env=dict(env, VULTR_API_KEY="k"), capture_output=True,
                         text=True, timeout=60)
    assert "no credentials" not in out.stdout, out.stdout


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("key", ["", "a-key"])
async def test_the_queue_panel_says_no_credentials_under_the_schedule(tmp_path, key):
    rt = make_runtime(tmp_path / "home", schedules=SHOWN_SCHEDULE,
                      **({"VULTR_API_KEY": key} if key else {}))
    app = make_app(rt)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            panel = app.main.query_one(QueuePanel)
            body = panel.query_one(Static)
            text = await until(pilot, lambda: "vultr-cost" in str(body.render()) and
                               str(body.render()))
            lines = text.splitlines()
            at = next(i for i, x in enumerate(lines) if x.strip().startswith("vultr-cost"))
            assert lines[at + 1].strip().startswith("next ")
            if key:
                assert "no credentials" not in text
            else:
                assert lines[at + 2].strip() == "no credentials: set VULTR_API_KEY", text
    finally:
        rt.close()
