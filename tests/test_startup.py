"""Process-wide settings are made once, at start-up, by every entry point: the CLI (and with it
the dashboard, --headless and collect --inline) and huey_config for plain consumers."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from optiinfra_tui.worker.startup import YOUNG_GC_THRESHOLD

REPO = Path(__file__).resolve().parents[1]

# Reports, as the process exits, the young-generation threshold each time a GC pass found it
# changed, and which of pyarrow/numpy the process loaded.
REPORT = """
import atexit, gc, json, os, sys
changes = []
def watch(phase, info):
    if not changes or changes[-1] != gc.get_threshold()[0]:
        changes.append(gc.get_threshold()[0])
gc.callbacks.append(watch)
def report():
    with open(os.environ["REPORT_TO"], "w") as f:
        json.dump({"threshold": gc.get_threshold()[0], "changes": changes,
                   "loaded": [m for m in ("pyarrow", "numpy") if m in sys.modules]}, f)
atexit.register(report)
"""


def env_for(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VULTR_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL", "OPTIINFRA_"))}
    (tmp_path / "no-schedules.toml").write_text("schedules = []\n")
    env.update(OPTIINFRA_HOME=str(tmp_path / "home"), REPORT_TO=str(tmp_path / "report.json"),
               OPTIINFRA_CONFIG=str(tmp_path / "no-schedules.toml"), **extra)
    return env


def run_python(code: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", REPORT + textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_the_cli_prepares_the_process_before_an_inline_collection(tmp_path, fake_vultr):
    env = env_for(tmp_path, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    result = run_python("""
        from optiinfra_tui.cli import main
        main()
        """, env, "collect", "vultr", "--types", "cost", "--inline", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["status"] == "success"
    report = json.loads((tmp_path / "report.json").read_text())
    # Python's default while importing, then one threshold to the end: set before the
    # collection, never toggled by it.
    assert report["threshold"] == YOUNG_GC_THRESHOLD
    assert report["changes"][-1] == YOUNG_GC_THRESHOLD
    assert report["changes"].count(YOUNG_GC_THRESHOLD) == 1
    assert report["loaded"] == []  # chDB opened without pyarrow or numpy


def test_huey_config_prepares_the_process_before_the_consumer_starts(tmp_path):
    result = run_python("""
        import huey_config
        from optiinfra_tui.storage.metrics import open_metrics
        open_metrics(huey_config.runtime.settings.clickhouse_url)
        """, env_for(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["threshold"] == YOUNG_GC_THRESHOLD
    assert report["loaded"] == []
