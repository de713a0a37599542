"""One picture of the system: the dashboard and `status` read the same monitor.Snapshot."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields, replace

from tui_data import env_for

from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage.history import utcnow
from optiinfra_tui.tui.source import Source
from optiinfra_tui.worker import monitor
from optiinfra_tui.worker.runtime import Runtime


def test_the_dashboard_and_status_read_one_snapshot(tmp_path):
    home = tmp_path / "home"
    schedule = '[[schedules]]\nname = "nightly"\nprovider = "vultr"\ncron = "0 2 * * *"\n'
    rt = Runtime(load_settings(env_for(home, schedules=schedule)))
    rt.history()
    try:
        now = utcnow()
        checks = monitor.health(rt, live=True)
        shown = Source(rt, clock=lambda: now).state(checks)
        status = monitor.snapshot(rt, checks=checks, now=now)
    finally:
        rt.close()
    assert type(shown) is monitor.Snapshot
    # The same object down to each field; the dashboard only adds its own threads, live.
    assert replace(shown, workers=[]) == replace(status, workers=[])
    assert [s.name for s in shown.schedules] == ["nightly"] and shown.errors == []
    assert shown.owner == ""  # chDB, and no process runs its collections

    out = subprocess.run([sys.executable, "-m", "optiinfra_tui", "status", "--json"],
                         env=env_for(home, schedules=schedule), capture_output=True, text=True,
                         timeout=60)
    doc = json.loads(out.stdout)
    assert set(doc) == {f.name for f in fields(monitor.Snapshot)}
    assert doc["owner"] == "" and doc["errors"] == []
