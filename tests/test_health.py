"""Health as it is: providers checked on a timer (once per period across consumers), a
collection's outcome counted as a check, and a check's age shown once it is overdue."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta

import pytest
from services import wait_until
from tui_data import StubMetrics, env_for
from tui_pilot import until

from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage.history import utcnow
from optiinfra_tui.tui.app import DashboardApp
from optiinfra_tui.tui.source import Source
from optiinfra_tui.tui.widgets.header import HealthHeader
from optiinfra_tui.worker import actions, health, monitor, runs
from optiinfra_tui.worker.agent import ConsumerAgent
from optiinfra_tui.worker.health import Health
from optiinfra_tui.worker.pool import WorkerPool
from optiinfra_tui.worker.runtime import Runtime
from optiinfra_tui.worker.schedules import epoch_slot

CLI = [sys.executable, "-m", "optiinfra_tui.cli"]


def checks(rt) -> dict[str, Health]:
    """What the header and `status` read."""
    return {h.name: h for h in monitor.health(rt, live=False)}


def finished(run_id: int, timeout: float = 30):
    return wait_until(lambda: (r := runs.get_run(run_id)) and r.is_final and r, timeout)


def test_a_collection_counts_as_a_check_of_its_provider_for_its_customer(make_env, fake_vultr):
    env = make_env(VULTR_API_URL=fake_vultr.url)
    name = f"vultr:{env['DEFAULT_CUSTOMER_ID']}"
    for key, ok in ((None, False), ("refused-key", False), (fake_vultr.token, True)):
        rt = Runtime(load_settings(dict(env, VULTR_API_KEY=key) if key else env))
        rt.history()
        pool = WorkerPool(rt, workers=1, kind="test")
        pool.start()
        try:
            done = finished(actions.collect(rt, "vultr").id)
            assert done.status == ("success" if ok else "failed"), done.error_message
            seen = checks(rt)[name]
            assert seen.ok is ok and seen.checked_at >= done.finished_at - timedelta(seconds=1)
            if ok:
                assert seen.message == f"collected {done.metrics_collected} rows (run {done.id})"
            elif key:  # the error's first words
                assert seen.message == done.error_message.splitlines()[0][:200]
                assert "refused (HTTP 401" in seen.message
            else:  # what to fix, worded as the timed check words it
                assert seen.message == "no credentials: set VULTR_API_KEY"
        finally:
            pool.stop(timeout=10)
            rt.close()


def test_providers_are_checked_once_per_period_across_consumers(make_env, fake_vultr):
    env = make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                   PROVIDER_CHECK_INTERVAL="60")
    rt = Runtime(load_settings(env))
    rt.history()
    name = f"vultr:{rt.settings.default_customer_id}"
    a, b = ConsumerAgent(rt, "test", threads=0), ConsumerAgent(rt, "test", threads=0)
    # An injected clock an hour ahead: no check recorded now counts as recent there.
    start = epoch_slot(60, utcnow() + timedelta(hours=1))

    a.check_providers(start + timedelta(seconds=1)).join(10)
    assert fake_vultr.count("/account") == 1
    assert checks(rt)[name].ok and checks(rt)[name].latency_ms is not None
    assert b.check_providers(start + timedelta(seconds=30)) is None  # same period: a did it
    assert a.check_providers(start + timedelta(seconds=40)) is None
    b.check_providers(start + timedelta(seconds=61)).join(10)  # the next period: b's turn
    assert fake_vultr.count("/account") == 2


def test_a_recent_collection_spares_the_providers_timed_check(make_env, fake_vultr):
    env = make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    rt = Runtime(load_settings(env))  # its pool's agent has no timed checks
    rt.history()
    pool = WorkerPool(rt, workers=1, kind="test")
    pool.start()
    try:
        assert finished(actions.collect(rt, "vultr").id).status == "success"
    finally:
        pool.stop(timeout=10)
        rt.close()
    before = fake_vultr.count("/account")
    timed = Runtime(load_settings(dict(env, PROVIDER_CHECK_INTERVAL="60")))
    timed.history()
    # The clock at the collection's end: its check is in the period now starting.
    ended = checks(timed)[f"vultr:{env['DEFAULT_CUSTOMER_ID']}"].checked_at
    ConsumerAgent(timed, "test", threads=0).check_providers(ended).join(10)
    assert fake_vultr.count("/account") == before
    # Without that collection, the same call checks.
    health.record([Health(f"vultr:{env['DEFAULT_CUSTOMER_ID']}", True, None)],
                  utcnow() - timedelta(minutes=5))
    ConsumerAgent(timed, "test", threads=0).check_providers(
        utcnow() + timedelta(minutes=1)).join(10)
    assert fake_vultr.count("/account") == before + 1


def test_a_customer_without_a_key_is_reported_without_calling_the_api(make_env, fake_vultr):
    rt = Runtime(load_settings(make_env(VULTR_API_URL=fake_vultr.url)))
    (found,) = health.check_all(rt, providers=True, backends=False)
    assert (found.ok, found.message) == (False, "no credentials: set VULTR_API_KEY")
    assert fake_vultr.count() == 0


def test_a_checks_age_shows_once_it_is_older_than_its_period():
    now = utcnow()
    provider = Health("vultr:acme", True, 84.0, "", now - timedelta(seconds=80), 60.0)
    assert provider.late(now) == ""  # within its period and a half
    assert provider.late(now + timedelta(seconds=20)) == "1m ago"
    assert provider.late(now + timedelta(minutes=3)) == "4m ago"
    backend = Health("metrics", True, 2.0, "", now - timedelta(seconds=40), 15.0)
    assert backend.late(now) == "40s ago"
    assert Health("queue", True, 0.4).late(now) == ""  # a live check is never late


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_header_shows_an_overdue_checks_age_and_status_shows_the_same(tmp_path):
    home = tmp_path / "home"
    rt = Runtime(load_settings(env_for(home)))
    rt.history()
    now = utcnow()
    health.record([Health("vultr:default_customer", True, 84.0)], now - timedelta(minutes=3))
    health.record([Health("metrics", True, 2.0)], now - timedelta(seconds=5))
    app = DashboardApp(rt, source=Source(rt, metrics=StubMetrics), poll=0.2)
    try:
        async with app.run_test(size=(180, 40)) as pilot:
            header = app.main.query_one(HealthHeader)
            shown = re.compile(r"vultr ● ok 84\.0 ms [34]m ago")
            text = await until(pilot, lambda: shown.search(str(header.render()))
                               and str(header.render()))
            assert re.search(r"metrics \(chdb\) ● ok 2\.0 ms(  |$)", text), text  # current
    finally:
        rt.close()

    out = subprocess.run(CLI + ["status"], env=env_for(home), capture_output=True, text=True,
                         timeout=60)
    line = next(x for x in out.stdout.splitlines() if "vultr:default_customer" in x)
    assert re.search(r"ok 84\.0 ms .*\(checked \d\d:\d\d:\d\d UTC, [34]m ago\)", line), line
