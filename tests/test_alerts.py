"""Alerts in one process: each condition found, claimed once among several evaluators and
resolved once, on real history stores (SQLite and PostgreSQL), delivered to a real local
HTTP receiver with retries; the settings that configure them. Tests own their clock: every
moment below is a fixed time, far from any real slot.

Three real consumers sharing Redis and PostgreSQL: test_alerts_consumers.py.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from datetime import datetime, timedelta

import pytest
from procs import CLI
from services import config_env, free_port, wait_until
from webhook_receiver import WebhookReceiver

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage import history
from optiinfra_tui.storage.history import AlertMessage, AlertState, WorkerHeartbeat, utcnow
from optiinfra_tui.worker import monitor, runs, schedules, webhooks
from optiinfra_tui.worker.alerts import GRACE, Evaluator
from optiinfra_tui.worker.runtime import Runtime

T0 = datetime(2031, 3, 4, 12, 0, 0)  # the tests' clock starts here
TOKEN = "T0KEN-s3cret-path"  # a webhook URL carries its secret in its path


def alerts_toml(*entries: str, schedules_toml: str | None = None) -> str:
    schedules_toml = schedules_toml or ('[[schedules]]\nname = "fast"\nprovider = "vultr"\n'
                                        'data_types = ["cost"]\ninterval = 60\n')
    return schedules_toml + "".join(f"\n[[alerts]]\n{e}\n" for e in entries)


OPS = 'name = "ops"\nurl_env = "OPS_WEBHOOK_URL"\nformat = "json"\nafter_failures = 3'
CHAT = 'name = "chat"\nurl_env = "CHAT_WEBHOOK_URL"\nformat = "slack"\nafter_failures = 2'


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("postgres_url")


def settings_for(tmp_path, receiver, toml, database_url=None):
    env = dict(config_env(tmp_path, toml), OPS_WEBHOOK_URL=receiver.url(f"/ops/{TOKEN}"),
               CHAT_WEBHOOK_URL=receiver.url(f"/chat/{TOKEN}"), PATH=os.environ["PATH"])
    if database_url:
        env["DATABASE_URL"] = database_url
    settings = load_settings(env)
    history.connect(settings.database_url)
    return settings


def finished(status: str, trigger: str = "schedule", customer: str = "default_customer") -> int:
    run = runs.create_run(customer, "vultr", ["cost"], trigger, max_attempts=1,
                          schedule="fast" if trigger == "schedule" else None)
    run = runs.start_attempt(run.id, "test:1:Worker-1")
    if status == "success":
        runs.finish_success(run, 10)
    else:
        runs.finish_failure(run, "auth", "Vultr refused the API key (401): check VULTR_API_KEY.")
    return run.id


def beat(consumer: str, at: datetime, kind: str = "headless", threads: int = 2) -> None:
    host, pid = consumer.split(":")
    WorkerHeartbeat.delete().where(WorkerHeartbeat.consumer_id == consumer).execute()
    WorkerHeartbeat.create(consumer_id=consumer, host=host, pid=int(pid), kind=kind,
                           threads=threads, beat_at=at, started_at=at)


def events(changes) -> list[tuple[str, str, str]]:
    return sorted((c.alert.name, c.event, c.condition) for c in changes)


def deliver(settings, at: datetime | None = None) -> int:
    urls = settings.alert_urls()
    with webhooks.client() as client:
        return webhooks.deliver(client, settings.alerts, urls, "test:1",
                                clock=lambda: at or utcnow())


# --- failed scheduled runs --------------------------------------------------------------------


def test_failed_scheduled_runs_fire_once_among_evaluators_then_resolve_once(
        tmp_path, receiver, database_url):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS, CHAT), database_url)
    a, b = (Evaluator(settings, f"host:{pid}", T0) for pid in (1, 2))
    cond = "failures:vultr:default_customer"
    last_ok = finished("success")
    finished("failed")
    finished("failed", trigger="manual")  # manual runs don't make a streak
    assert a.run(T0) == [] and b.run(T0) == []

    finished("failed")  # two scheduled failures: chat's threshold
    assert events(b.run(T0) + a.run(T0)) == [("chat", "firing", cond)]
    finished("failed")  # three: ops'
    assert events(a.run(T0) + b.run(T0)) == [("ops", "firing", cond)]
    finished("failed")
    assert a.run(T0) == [] and b.run(T0) == []  # still the same occurrence

    ok = finished("success", trigger="manual")  # any success ends it
    assert events(b.run(T0) + a.run(T0)) == [("chat", "resolved", cond),
                                             ("ops", "resolved", cond)]
    finished("failed")
    assert a.run(T0) == [] and b.run(T0) == []
    assert {s.alert: (s.active, s.episode) for s in AlertState.select()} == {
        "ops": (False, f"{last_ok:020d}"), "chat": (False, f"{last_ok:020d}")}

    assert deliver(settings) == 4
    ops = [p.body for p in receiver.posts(f"/ops/{TOKEN}")]
    assert [(m["event"], m["alert"], m["condition"], m["key"], m["provider"], m["customer"])
            for m in ops] == [("firing", "ops", "failures", cond, "vultr", "default_customer"),
                              ("resolved", "ops", "failures", cond, "vultr",
                               "default_customer")]
    assert ops[0]["summary"].startswith(
        "vultr for customer default_customer: 3 scheduled runs failed in a row since run "
        f"{last_ok} succeeded; the last, run {ok - 2}, with auth: Vultr refused the API key")
    assert ops[1]["summary"] == (f"vultr for customer default_customer recovered: run {ok} "
                                 "succeeded after 4 failed scheduled runs.")
    assert ops[0]["since"] == ops[1]["since"] == "2031-03-04T12:00:00Z"
    chat = [p.body for p in receiver.posts(f"/chat/{TOKEN}")]
    assert list(chat[0]) == ["text"] and chat[0]["text"].startswith(
        ":rotating_light: *OptiInfra alert* (chat): vultr for customer default_customer: "
        "2 scheduled runs failed in a row")
    assert chat[1]["text"].startswith(":white_check_mark: *OptiInfra resolved* (chat): vultr")
    assert {p.content_type for p in receiver.posts()} == {"application/json"}
    assert deliver(settings) == 0  # each sent once


def test_a_new_run_of_failures_after_a_recovery_is_a_new_alert(tmp_path, receiver):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS))
    ev = Evaluator(settings, "host:1", T0)
    for _ in range(3):
        finished("failed")  # never succeeded: still a streak
    assert events(ev.run(T0)) == [("ops", "firing", "failures:vultr:default_customer")]
    finished("success")
    assert [c.event for c in ev.run(T0)] == ["resolved"]
    for _ in range(3):
        finished("failed")
    assert [c.event for c in ev.run(T0)] == ["firing"]
    assert deliver(settings) == 3
    assert [p.body["event"] for p in receiver.posts()] == ["firing", "resolved", "firing"]


# --- a slot nobody ran ------------------------------------------------------------------------


def test_a_slot_no_consumer_claimed_fires_once_and_the_next_slot_run_resolves_it(
        tmp_path, receiver, database_url):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS), database_url)
    a, b = (Evaluator(settings, f"host:{pid}", T0) for pid in (1, 2))
    assert schedules.claim("fast", T0, "host:1")  # 12:00 ran; 12:01 nobody claims
    now = T0 + timedelta(minutes=2) + GRACE + timedelta(seconds=1)
    assert a.run(now) == []  # nobody beats: the consumers alert's business, not this one's
    beat("host:1", now)
    assert events(b.run(now) + a.run(now)) == [("ops", "firing", "missed:fast")]
    beat("host:1", now + timedelta(minutes=1))
    assert a.run(now + timedelta(minutes=1)) == []  # 12:02 missed too: the same occurrence

    assert schedules.claim("fast", T0 + timedelta(minutes=3), "host:1")
    later = now + timedelta(minutes=2)
    beat("host:1", later)
    assert events(a.run(later) + b.run(later)) == [("ops", "resolved", "missed:fast")]
    assert deliver(settings) == 2
    firing, resolved = (p.body for p in receiver.posts())
    assert (firing["schedule"], firing["slot"]) == ("fast", "2031-03-04T12:01:00Z")
    assert "the 2031-03-04 12:01:00 UTC slot passed without any consumer running it" in (
        firing["summary"])
    assert resolved["summary"] == ("schedule fast runs again: the 12:03:00 UTC slot was "
                                   "claimed by host:1.")


def test_slots_before_the_evaluator_started_or_while_paused_are_not_missed(tmp_path, receiver):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS))
    now = T0 + timedelta(minutes=5)
    beat("host:1", now)
    assert Evaluator(settings, "host:1", now).run(now) == []  # it wasn't there to see them
    schedules.set_paused(["fast"], True)
    assert Evaluator(settings, "host:1", T0).run(now) == []


# --- every consumer stopped -------------------------------------------------------------------


def test_every_consumer_stale_fires_once_and_a_heartbeat_back_resolves_it(
        tmp_path, receiver, database_url):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS), database_url)
    a, b = (Evaluator(settings, f"watcher:{pid}", T0) for pid in (1, 2))
    now = T0 + timedelta(minutes=1)
    beat("host:1", now - timedelta(seconds=20))
    beat("host:2", now - timedelta(seconds=40))
    beat("laptop:7", now, kind="cli", threads=1)  # an inline collect runs no queued task
    assert a.run(now, check_consumers=False) == []  # just back from an outage: wait
    assert events(a.run(now) + b.run(now)) == [("ops", "firing", "consumers")]
    assert b.run(now + timedelta(seconds=5)) == []

    beat("host:2", now + timedelta(seconds=10))
    assert events(b.run(now + timedelta(seconds=10))) == [("ops", "resolved", "consumers")]
    assert a.run(now + timedelta(seconds=10)) == []
    assert deliver(settings) == 2
    firing, resolved = (p.body for p in receiver.posts())
    assert firing["summary"] == (
        "no consumer is running: every consumer's heartbeat is stale (the last beat at "
        "2031-03-04 12:00:40 UTC, from host:1; 2 consumers stopped without saying so).")
    assert resolved["summary"] == "consumers are running again: host:2."


def test_consumers_that_stopped_cleanly_are_not_an_alert(tmp_path, receiver):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS))
    beat("host:1", T0 - timedelta(days=2))  # long gone: not news
    assert Evaluator(settings, "watcher:1", T0).run(T0) == []  # and none stopped just now


# --- delivery ---------------------------------------------------------------------------------


def test_a_failed_delivery_is_retried_with_back_off_and_keeps_the_order(tmp_path, receiver,
                                                                         caplog):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS))
    ev = Evaluator(settings, "host:1", T0)
    for _ in range(3):
        finished("failed")
    ev.run(T0)
    finished("success")
    ev.run(T0)
    receiver.answer(500, 503)
    caplog.set_level(logging.INFO, "optiinfra.alerts")
    start = utcnow()
    assert deliver(settings, start) == 0
    first = AlertMessage.select().order_by(AlertMessage.id).first()
    assert first.attempts == 1 and first.last_error == "the webhook answered HTTP 500"
    assert start + timedelta(seconds=1) <= first.due_at <= start + timedelta(seconds=2)
    assert deliver(settings, start) == 0  # not due yet: not even tried
    assert deliver(settings, start + timedelta(seconds=2)) == 0  # 503: a longer wait
    second = AlertMessage.get_by_id(first.id)
    assert second.attempts == 2 and second.due_at >= start + timedelta(seconds=4)
    assert receiver.posts() == []  # the recovery never overtakes its alert
    assert deliver(settings, start + timedelta(minutes=10)) == 2
    assert [p.body["event"] for p in receiver.posts()] == ["firing", "resolved"]
    assert [m.attempts for m in AlertMessage.select().order_by(AlertMessage.id)] == [3, 1]
    assert "webhook delivery failed (the webhook answered HTTP 500), attempt 1 of 10" in (
        caplog.text)
    stored = [f"{m.body} {m.last_error}" for m in AlertMessage.select()]
    assert TOKEN not in caplog.text + " ".join(stored)


def test_a_refused_webhook_is_not_retried_and_the_warning_names_its_variable(
        tmp_path, receiver, caplog):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS))
    for _ in range(3):
        finished("failed")
    Evaluator(settings, "host:1", T0).run(T0)
    receiver.answer(404)
    assert deliver(settings) == 0
    message = AlertMessage.get()
    assert message.given_up and message.attempts == 1
    assert ("not delivered (the webhook answered HTTP 404) after 1 attempt(s); giving up on "
            "it. Check the webhook URL in OPS_WEBHOOK_URL.") in caplog.text
    assert TOKEN not in caplog.text


def test_an_unreachable_webhook_is_described_without_its_url(tmp_path, receiver):
    port = free_port()  # nothing listens there
    env = dict(config_env(tmp_path, alerts_toml(OPS)), PATH=os.environ["PATH"],
               OPS_WEBHOOK_URL=f"http://127.0.0.1:{port}/ops/{TOKEN}?key={TOKEN}")
    settings = load_settings(env)
    history.connect(settings.database_url)
    for _ in range(3):
        finished("failed")
    Evaluator(settings, "host:1", T0).run(T0)
    assert deliver(settings) == 0
    error = AlertMessage.get().last_error
    assert error.startswith("ConnectError") and TOKEN not in error and str(port) not in error


def test_a_hanging_webhook_never_holds_up_the_workers_or_the_heartbeat(make_env, tmp_path,
                                                                       receiver, fake_vultr):
    # A real pool: a failing scheduled run fires the alert, whose POST then hangs; meanwhile
    # the workers collect and the heartbeat goes on.
    toml = alerts_toml('name = "ops"\nurl_env = "OPS_WEBHOOK_URL"\nafter_failures = 1',
                       schedules_toml='[[schedules]]\nname = "yearly"\nprovider = "vultr"\n'
                                      'cron = "0 0 1 1 *"\n')
    (tmp_path / "alerts.toml").write_text(toml)
    env = make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                   OPTIINFRA_CONFIG=str(tmp_path / "alerts.toml"),
                   OPS_WEBHOOK_URL=receiver.url(f"/ops/{TOKEN}"), MAX_RETRIES="0")
    from optiinfra_tui.worker.collection import request_collection
    from optiinfra_tui.worker.pool import WorkerPool

    rt = Runtime(load_settings(env))
    rt.history()
    receiver.hang.set()
    pool = WorkerPool(rt, workers=1, kind="test")
    pool.start()
    try:
        token, fake_vultr.token = fake_vultr.token, "rotated"  # the key is refused: 401
        failed = request_collection(rt, rt.settings.default_customer_id, "vultr", None,
                                    trigger="schedule", schedule="yearly")
        assert wait_until(lambda: runs.get_run(failed.id).status == "failed", 30)
        assert receiver.arrived.wait(30)  # the alert's POST, now hanging
        fake_vultr.token = token
        beat_at = WorkerHeartbeat.get(WorkerHeartbeat.consumer_id == rt.consumer_id).beat_at
        ok = request_collection(rt, rt.settings.default_customer_id, "vultr", None,
                                trigger="manual")
        assert wait_until(lambda: runs.get_run(ok.id).status == "success", 30)
        assert wait_until(lambda: WorkerHeartbeat.get(
            WorkerHeartbeat.consumer_id == rt.consumer_id).beat_at > beat_at, 10)
        assert receiver.posts() == []  # still hanging all along
        receiver.release.set()
        assert wait_until(lambda: [p.body["event"] for p in receiver.posts()]
                          == ["firing", "resolved"], 30)
    finally:
        receiver.release.set()
        pool.stop(10)
        rt.close()


# --- where alerts show ---------------------------------------------------------------------


def test_status_and_the_snapshot_show_a_firing_alert(tmp_path, receiver):
    settings = settings_for(tmp_path, receiver, alerts_toml(OPS, CHAT))
    for _ in range(3):
        finished("failed")
    Evaluator(settings, "host:1", T0).run(T0)
    (active,) = monitor.active_alerts("default_customer")
    assert (active.label, active.alerts, active.since) == ("vultr failing", ["ops", "chat"], T0)
    assert monitor.active_alerts("someone_else")[0].label == "vultr:default_customer failing"

    env = {**settings.env, "CLICKHOUSE_URL": "http://127.0.0.1:9/nothing"}
    text = subprocess.run(CLI + ["status"], env=env, capture_output=True, text=True, timeout=60)
    assert ("alerts: 1 firing\n  vultr failing  since 2031-03-04 12:00:00 UTC (ops, chat)\n"
            "    vultr for customer default_customer: 3 scheduled runs failed") in text.stdout
    doc = json.loads(subprocess.run(CLI + ["status", "--json"], env=env, capture_output=True,
                                    text=True, timeout=60).stdout)
    assert [(a["condition"], a["alerts"]) for a in doc["alerts"]] == [
        ("failures:vultr:default_customer", ["ops", "chat"])]
    assert TOKEN not in text.stdout + text.stderr + json.dumps(doc)


# --- settings ------------------------------------------------------------------------------


def load(tmp_path, toml: str, **env: str):
    return load_settings(dict(config_env(tmp_path, toml), **env))


def test_alerts_are_read_from_the_file_with_their_defaults(tmp_path):
    s = load(tmp_path, '[[alerts]]\nname = "ops"\nurl_env = "OPS_URL"\n')
    (ops,) = s.alerts
    assert (ops.name, ops.url_env, ops.format, ops.after_failures) == ("ops", "OPS_URL", "json", 3)


@pytest.mark.parametrize(("entry", "message"), [
    ('url = "https://hooks.example.com/T0KEN-s3cret-path"',
     "alerts[0].url is not a known key. Did you mean url_env?"),
    ('url_env = "https://hooks.example.com/T0KEN-s3cret-path"',
     "alerts[0]: url_env must name the environment variable that holds the webhook's URL"),
    ('url_env = "OPS_URL"\nformat = "teams"',
     "alerts[0]: format 'teams' is not supported; use 'json' or 'slack'."),
    ('url_env = "OPS_URL"\nafter_failures = 0', "alerts[0]: after_failures must be a whole"),
    ('url_env = "OPS_URL"\nafter_failures = "3"', "alerts[0]: after_failures must be a whole"),
    ('url_env = "OPS_URL"\nafter_failure = 3',
     "alerts[0].after_failure is not a known key. Did you mean after_failures?"),
])
def test_a_bad_alert_entry_says_what_to_fix_and_never_echoes_a_url(tmp_path, entry, message):
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, f'[[alerts]]\nname = "ops"\n{entry}\n')
    assert message in str(exc.value)
    assert "T0KEN" not in str(exc.value)


def test_two_alerts_need_two_names(tmp_path):
    entry = '[[alerts]]\nname = "ops"\nurl_env = "A"\n'
    with pytest.raises(ConfigError, match=r"alerts\[1\]: name 'ops' must be a unique"):
        load(tmp_path, entry + entry)


def test_missing_or_bad_urls_are_named_by_variable_never_by_value(tmp_path):
    s = load(tmp_path, alerts_toml(OPS, CHAT), CHAT_WEBHOOK_URL=f"ftp://x/{TOKEN}")
    with pytest.raises(ConfigError) as exc:
        s.alert_urls()
    assert str(exc.value).startswith(
        "OPS_WEBHOOK_URL is not set; CHAT_WEBHOOK_URL is not an http:// or https:// URL: the "
        "webhook URL of [[alerts]] in ")
    assert TOKEN not in str(exc.value)
    s = load(tmp_path, alerts_toml(OPS), OPS_WEBHOOK_URL=f"https://hooks.example.com/{TOKEN}")
    assert s.alert_urls() == {"ops": f"https://hooks.example.com/{TOKEN}"}
    assert f"https://hooks.example.com/{TOKEN}" in s.secrets()  # scrubbed from every log


def test_a_consumer_without_its_webhook_url_stops_at_start_naming_the_variable(tmp_path):
    env = dict(config_env(tmp_path, alerts_toml(OPS)), PATH=os.environ["PATH"],
               PROVIDER_CHECK_INTERVAL="0")
    r = subprocess.run(CLI + ["--headless"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr.startswith("optiinfra-tui: configuration error: OPS_WEBHOOK_URL is not set")
    assert "Traceback" not in r.stderr
    # A command that sends nothing doesn't need it.
    assert subprocess.run(CLI + ["history"], env=env, capture_output=True,
                          timeout=60).returncode == 0
