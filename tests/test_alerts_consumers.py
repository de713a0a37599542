"""Alerts from real consumer processes (`--headless` and `huey_consumer`) sharing a real Redis
and PostgreSQL, told to a real local HTTP receiver: however many consumers see a condition,
the webhook hears of it once, and of its end once.

The schedules are the tests' own (every 3 s); the failing provider is the Vultr double
refusing the key (401).
"""

from __future__ import annotations

import re
import time

import pytest
from procs import Consumer, show, stop_all, wait_for_heartbeats
from services import wait_until
from test_reliability import cluster_env
from webhook_receiver import WebhookReceiver

from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage import history
from optiinfra_tui.storage.history import AlertMessage, AlertState, CollectionRun
from optiinfra_tui.worker import monitor, schedules
from optiinfra_tui.worker.alerts import EVERY, AlertWatcher
from optiinfra_tui.worker.runtime import Runtime

TOKEN = "T0KEN-s3cret-path"
ALERTS = """
[[alerts]]
name = "ops"
url_env = "OPS_WEBHOOK_URL"
after_failures = 3

[[alerts]]
name = "chat"
url_env = "CHAT_WEBHOOK_URL"
format = "slack"
after_failures = 5
"""
FAST = '[[schedules]]\nname = "fast"\nprovider = "vultr"\ndata_types = ["cost"]\ninterval = 3\n'


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


def events(receiver: WebhookReceiver, path: str) -> list[str]:
    return [p.body.get("event") or p.body["text"].split("*")[1] for p in receiver.posts(path)]


def scheduled(status: str) -> int:
    return CollectionRun.select().where(CollectionRun.trigger == "schedule",
                                        CollectionRun.status == status).count()


@pytest.mark.slow
@pytest.mark.parametrize("fake_vultr", [{"invoices": 1, "items": 2}], indirect=True)
def test_three_consumers_send_one_alert_then_one_recovery_for_a_failing_provider(
        tmp_path, fake_vultr, redis_url, postgres_url, receiver):
    ops, chat = f"/ops/{TOKEN}", f"/chat/{TOKEN}"
    env = cluster_env(tmp_path, fake_vultr, redis_url, postgres_url, FAST + ALERTS,
                      MAX_RETRIES="0", OPS_WEBHOOK_URL=receiver.url(ops),
                      CHAT_WEBHOOK_URL=receiver.url(chat))
    consumers = [Consumer("headless", env, tmp_path / "c1"), Consumer("huey", env, tmp_path / "c2"),
                 Consumer("headless", env, tmp_path / "c3")]
    history.connect(postgres_url)
    key, fake_vultr.token = fake_vultr.token, "rotated-key"  # the consumers' key: refused, 401
    try:
        for c in consumers:
            c.start()
        assert wait_for_heartbeats(consumers), [c.printed()[-2000:] for c in consumers]
        assert wait_until(lambda: receiver.posts(ops) and receiver.posts(chat), 120)
        # More failures, and time for every consumer to look at them again: still one each.
        seen = scheduled("failed")
        assert wait_until(lambda: scheduled("failed") >= seen + 2 * EVERY / 3 + 2, 60)
        assert events(receiver, ops) == ["firing"]
        assert events(receiver, chat) == ["OptiInfra alert"]

        fake_vultr.token = key  # fixed: the next scheduled run succeeds
        assert wait_until(lambda: len(receiver.posts(ops)) == 2 and len(receiver.posts(chat)) == 2,
                          60)
        seen = scheduled("success")
        assert wait_until(lambda: scheduled("success") >= seen + 2 * EVERY / 3 + 2, 60)
        schedules.set_paused(["fast"], True)
    finally:
        fake_vultr.token = key
        stop_all(consumers)
        show(consumers)

    assert events(receiver, ops) == ["firing", "resolved"]
    assert events(receiver, chat) == ["OptiInfra alert", "OptiInfra resolved"]
    firing, resolved = (p.body for p in receiver.posts(ops))
    assert (firing["condition"], firing["provider"]) == ("failures", "vultr")
    failed = int(re.search(r": (\d+) scheduled runs failed in a row", firing["summary"])[1])
    assert failed >= 3 and "auth: " in firing["summary"]
    assert resolved["summary"].startswith(
        f"vultr for customer {firing['customer']} recovered: run ")
    slack = receiver.posts(chat)[0].body["text"]
    assert int(re.search(r": (\d+) scheduled runs failed", slack)[1]) >= 5  # chat's threshold
    # Nothing else fired (every slot was run), each message went out once, at the first try.
    assert {(s.alert, s.condition, s.active) for s in AlertState.select()} == {
        ("ops", firing["key"], False), ("chat", firing["key"], False)}
    assert [(m.alert, m.event, m.attempts, m.sent_at is not None)
            for m in AlertMessage.select().order_by(AlertMessage.id)] == [
        ("ops", "firing", 1, True), ("chat", "firing", 1, True),
        ("ops", "resolved", 1, True), ("chat", "resolved", 1, True)]
    printed = "".join(c.printed() + c.logged() for c in consumers)
    assert sum(c.printed().count("alert ops firing: ") for c in consumers) == 1
    stored = "".join(f"{m.body}{m.last_error}" for m in AlertMessage.select())
    assert TOKEN not in printed + stored
    assert "Traceback" not in printed


@pytest.mark.slow
def test_when_every_consumer_dies_watchers_send_one_alert_and_one_recovery(
        tmp_path, fake_vultr, redis_url, postgres_url, receiver):
    ops = f"/ops/{TOKEN}"
    env = cluster_env(tmp_path, fake_vultr, redis_url, postgres_url, "schedules = []\n" + ALERTS,
                      OPS_WEBHOOK_URL=receiver.url(ops), CHAT_WEBHOOK_URL=receiver.url("/chat"))
    consumers = [Consumer("headless", env, tmp_path / "c1"), Consumer("huey", env, tmp_path / "c2"),
                 Consumer("headless", env, tmp_path / "c3")]
    history.connect(postgres_url)
    # Two watching processes' worth of watchers (a dashboard with --workers 0 runs one).
    watchers = []
    for name in ("watcher-1", "watcher-2"):
        rt = Runtime(load_settings(dict(env, OPTIINFRA_HOME=str(tmp_path / name))))
        rt.consumer_id = f"{rt.host}:{name}"
        watchers.append(AlertWatcher(rt, rt.settings.alert_urls()))
    try:
        for c in consumers:
            c.start()
        # Beating with their worker threads counted (huey_consumer's come a beat later).
        assert wait_until(lambda: {c.pid for c in consumers} <= {
            hb.pid for hb in monitor.consumers()}, 90)
        for w in watchers:
            w.start()
        for c in consumers:
            c.kill()  # kill -9: their heartbeats stay, and go stale
        assert wait_until(lambda: receiver.posts(ops), 90)
        time.sleep(2 * EVERY + 1)  # both watchers look again: nothing new
        assert events(receiver, ops) == ["firing"]

        back = consumers[1].start()
        assert wait_until(lambda: len(receiver.posts(ops)) == 2, 90)
        time.sleep(2 * EVERY + 1)
    finally:
        for w in watchers:
            w.stop()
        stop_all(consumers)
        show(consumers)
    assert events(receiver, ops) == ["firing", "resolved"]
    firing, resolved = (p.body for p in receiver.posts(ops))
    assert firing["condition"] == "consumers"
    assert firing["summary"].startswith("no consumer is running: every consumer's heartbeat is "
                                        "stale")
    assert "3 consumers stopped without saying so" in firing["summary"]
    assert resolved["summary"] == f"consumers are running again: {watchers[0].rt.host}:{back.pid}."
    assert events(receiver, "/chat") == ["OptiInfra alert", "OptiInfra resolved"]
