"""Issue 4 provoked for real: several consumer processes, kill -9, Redis and PostgreSQL
stopped under them, ClickHouse unreachable, Prometheus metrics, pruning.

Consumers are real processes (`optiinfra-tui --headless`, `huey_consumer huey_config.huey`),
each with its own OPTIINFRA_HOME (chDB: one process per path), sharing Redis and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from datetime import timedelta

import pytest
import redis
from procs import (
    CLI,
    REDIS_SERVER,
    Consumer,
    RedisServer,
    show,
    stop_all,
    wait_for_heartbeats,
    worker_env,
)
from services import PostgresServer, _pg_bindir, free_port, missing, pg_root, wait_until
from test_telemetry import value

from optiinfra_tui.errors import BackendUnavailable
from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage import history
from optiinfra_tui.storage.history import (
    CollectionRun,
    RunAttempt,
    ScheduleSlot,
    db,
    utcnow,
)
from optiinfra_tui.worker import actions, recovery, runs, schedules
from optiinfra_tui.worker.agent import ConsumerAgent
from optiinfra_tui.worker.collection import request_collection, run_inline
from optiinfra_tui.worker.pool import WorkerPool
from optiinfra_tui.worker.runtime import Runtime

NO_SCHEDULES = "schedules = []\n"


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of this test's own, to stop and start."""
    if not os.path.exists(REDIS_SERVER):
        missing("redis-server")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def own_postgres(tmp_path_factory):
    """A PostgreSQL of this test's own, to stop and start."""
    if _pg_bindir() is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl)")
    root = pg_root()
    server = PostgresServer(root / "cluster")
    server.start()
    yield server
    db.close()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def cluster_env(tmp_path, fake_vultr, redis_url, database_url, toml=NO_SCHEDULES, **extra):
    cfg = tmp_path / "optiinfra.toml"
    cfg.write_text(toml)
    return worker_env(os.environ, REDIS_URL=redis_url, DATABASE_URL=database_url,
                      VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                      OPTIINFRA_CONFIG=cfg, **{"RETRY_DELAY": "0.5", **extra})


def cli(args, env, home, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=dict(env, OPTIINFRA_HOME=str(home)),
                          capture_output=True, text=True, timeout=timeout)


def run_of(run_id: int) -> CollectionRun:
    return CollectionRun.get_by_id(run_id)


def all_final(ids, timeout: float) -> bool:
    return bool(wait_until(lambda: all(run_of(i).is_final for i in ids), timeout, 0.25))


# --- (a) several consumers, each schedule slot once -------------------------------------------


@pytest.mark.slow
def test_three_consumers_run_each_schedule_slot_exactly_once(tmp_path, fake_vultr, own_redis,
                                                             postgres_url):
    env = cluster_env(tmp_path, fake_vultr, own_redis.url, postgres_url,
                      '[[schedules]]\nname = "fast"\ndata_types = ["cost"]\ninterval = 2\n')
    consumers = [Consumer("headless", env, tmp_path / "c1"),
                 Consumer("huey", env, tmp_path / "c2"),
                 Consumer("headless", env, tmp_path / "c3")]
    history.connect(postgres_url)
    try:
        for c in consumers:
            c.start()
        assert wait_for_heartbeats(consumers), [c.printed()[-2000:] for c in consumers]
        status = json.loads(cli(["status", "--json"], env, tmp_path / "cli").stdout)
        assert {c.pid for c in consumers} <= {w["pid"] for w in status["workers"]}
        fast = ScheduleSlot.select().where(ScheduleSlot.schedule == "fast")  # not the prune's
        assert wait_until(lambda: fast.count() >= 6, 60)
        schedules.set_paused(["fast"], True)
        time.sleep(2)  # a tick that read the schedules before the pause finishes its claim
        slots = [s.slot for s in fast.order_by(ScheduleSlot.slot)]
        assert wait_until(lambda: CollectionRun.select().count() >= len(slots) and all(
            r.is_final for r in CollectionRun.select()), 60)
    finally:
        stop_all(consumers)
        show(consumers)
    # Consecutive slots, each claimed once (the unique key) and run once.
    assert slots == [slots[0] + timedelta(seconds=2 * i) for i in range(len(slots))]
    done = list(CollectionRun.select())
    assert len(done) == len(slots)
    assert {(r.trigger, r.schedule, r.status) for r in done} == {("schedule", "fast", "success")}


# --- (b) kill -9 mid-collection -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fake_vultr", [{"invoices": 30, "items": 3}], indirect=True)
def test_a_run_killed_mid_collection_is_recovered_once_and_succeeds(tmp_path, fake_vultr,
                                                                   own_redis, postgres_url):
    # 5 requests/s: the collection takes ~15 s, time to kill it in the middle.
    env = cluster_env(tmp_path, fake_vultr, own_redis.url, postgres_url, VULTR_MAX_RPS="5")
    consumers = [Consumer("headless", env, tmp_path / "c1"), Consumer("huey", env, tmp_path / "c2")]
    history.connect(postgres_url)
    try:
        for c in consumers:
            c.start()
        assert wait_for_heartbeats(consumers)
        rt = Runtime(load_settings(dict(env, OPTIINFRA_HOME=str(tmp_path / "producer"))))
        run = actions.collect(rt, "vultr")
        started = wait_until(lambda: (r := run_of(run.id)).status == "running" and r, 60)
        assert started
        owner = next(c for c in consumers if str(c.pid) == started.worker.split(":")[1])
        assert wait_until(lambda: fake_vultr.count() >= 8, 30)
        owner.kill()
        owner.start()  # restarted, as a supervisor would
        assert all_final([run.id], 120)
    finally:
        stop_all(consumers)
        show(consumers)
    done = run_of(run.id)
    assert (done.status, done.attempt) == ("success", 2), done.error_message
    first, second = runs.attempts(run.id)
    assert (first.status, first.error_kind) == ("failed", recovery.LOST)
    assert second.status == "success"
    assert recovery.consumer_of(second.worker) != recovery.consumer_of(first.worker)
    assert second.started_at >= first.finished_at  # never two attempts at once
    assert not CollectionRun.select().where(CollectionRun.status == "running").exists()
    recovered = sum(c.logged().count("re-enqueued as attempt 2") for c in consumers)
    assert recovered + sum(c.printed().count("re-enqueued as attempt 2")
                           for c in consumers if c.kind == "huey") == 1


# --- (c) Redis stopped under a running consumer -------------------------------------------------


def outage_lines(text: str) -> list[str]:
    """Lines written while the queue was down, other than the runs' own results."""
    return [line for line in text.splitlines() if line.strip() and "collected" not in line]


def test_headless_names_redis_and_its_variable_when_the_queue_goes_down(tmp_path, own_redis):
    redis.Redis(port=own_redis.port).config_set("requirepass", "s3cret-pw")
    cfg = tmp_path / "optiinfra.toml"
    cfg.write_text(NO_SCHEDULES)
    env = worker_env(os.environ, OPTIINFRA_CONFIG=cfg,
                     REDIS_URL=f"redis://:s3cret-pw@127.0.0.1:{own_redis.port}/0")
    consumer = Consumer("headless", env, tmp_path / "c1", workers=2)
    try:
        consumer.start()
        assert wait_until(lambda: "headless consumer" in consumer.printed(), 60)
        own_redis.stop()
        assert wait_until(lambda: "queue unreachable" in consumer.printed(), 60)
        time.sleep(3)  # both workers and the scheduler fail their polls meanwhile
    finally:
        stop_all([consumer])
        show([consumer])
    lines = [line for line in consumer.printed().splitlines() if "queue unreachable" in line]
    assert len(lines) == 1, lines
    assert (f"queue unreachable: Redis at 127.0.0.1:{own_redis.port}, from REDIS_URL "
            "(ConnectionError") in lines[0]
    assert lines[0].endswith("Check that Redis is running there, or point REDIS_URL at one "
                             "that is.")
    assert "s3cret-pw" not in consumer.printed() + consumer.logged()


@pytest.mark.slow
@pytest.mark.parametrize("fake_vultr", [{"invoices": 6, "items": 3}], indirect=True)
def test_redis_outage_recovers_by_itself_loses_nothing_and_logs_a_handful(
        tmp_path, fake_vultr, own_redis, postgres_url):
    env = cluster_env(tmp_path, fake_vultr, own_redis.url, postgres_url, VULTR_MAX_RPS="5")
    consumer = Consumer("headless", env, tmp_path / "c1", workers=1)
    history.connect(postgres_url)
    try:
        consumer.start()
        assert wait_for_heartbeats([consumer])
        rt = Runtime(load_settings(dict(env, OPTIINFRA_HOME=str(tmp_path / "producer"))))
        ids = [actions.collect(rt, "vultr").id for _ in range(4)]
        assert wait_until(lambda: run_of(ids[0]).status == "running", 30)
        assert rt.huey.pending_count() >= 2  # waiting in Redis when it stops
        log_mark, out_mark = len(consumer.logged()), len(consumer.printed())

        own_redis.stop()
        stopped = time.monotonic()
        r = cli(["collect", "vultr"], env, tmp_path / "cli")
        assert r.returncode == 3 and "queue is unreachable" in r.stderr, r.stderr
        assert CollectionRun.select().count() == len(ids)  # nothing half-done recorded
        time.sleep(max(0.0, 8 - (time.monotonic() - stopped)))
        assert consumer.alive()
        own_redis.start()  # same port and append-only file

        assert all_final(ids, 120)
        assert wait_until(lambda: "queue reachable again" in consumer.logged()[log_mark:], 30)
    finally:
        stop_all([consumer])
        show([consumer])
    assert [run_of(i).status for i in ids] == ["success"] * len(ids)
    logged = outage_lines(consumer.logged()[log_mark:])
    printed = outage_lines(consumer.printed()[out_mark:])
    assert len(logged) <= 6, logged
    assert len(printed) <= 8, printed  # plus the two lines of the SIGTERM at the end
    assert sum("queue unreachable" in line for line in logged) == 1
    assert "Traceback" not in consumer.printed()


@pytest.mark.slow
def test_a_retry_huey_drops_during_a_redis_outage_is_re_enqueued(tmp_path, fake_vultr, own_redis,
                                                                   postgres_url):
    env = cluster_env(tmp_path, fake_vultr, own_redis.url, postgres_url, RETRY_DELAY="1")
    consumer = Consumer("headless", env, tmp_path / "c1", workers=1)
    history.connect(postgres_url)
    try:
        consumer.start()
        assert wait_for_heartbeats([consumer])
        rt = Runtime(load_settings(dict(env, OPTIINFRA_HOME=str(tmp_path / "producer"))))
        fake_vultr.fail_503(times=float("inf"))
        run = actions.collect(rt, "vultr")
        assert wait_until(lambda: run_of(run.id).status == "running", 30)
        own_redis.stop()  # the attempt fails meanwhile: Huey can't re-schedule its retry
        assert wait_until(lambda: run_of(run.id).status == "retrying", 30)
        time.sleep(2)
        fake_vultr.clear_faults()
        own_redis.start()
        assert wait_until(lambda: "queue reachable again" in consumer.logged(), 30)
        assert run.task_id not in {t.id for t in rt.huey.pending() + rt.huey.scheduled()}
        assert run_of(run.id).status == "retrying"  # lost: nothing would ever run it
        # Any consumer's agent does this every 5 s; LOST_AFTER later it finds the run.
        later = utcnow() + recovery.LOST_AFTER + timedelta(seconds=5)
        assert recovery.requeue_lost(rt, later) == [run.id]
        assert all_final([run.id], 60)
    finally:
        stop_all([consumer])
        show([consumer])
    assert (run_of(run.id).status, run_of(run.id).attempt) == ("success", 2)


def test_status_json_exits_non_zero_while_redis_is_down(tmp_path, own_redis):
    env = worker_env(os.environ, REDIS_URL=own_redis.url)
    assert cli(["status", "--json"], env, tmp_path / "cli").returncode == 0
    own_redis.stop()
    r = cli(["status", "--json"], env, tmp_path / "cli")
    assert r.returncode == 1, r.stdout + r.stderr
    health = {h["name"]: h["ok"] for h in json.loads(r.stdout)["health"]}
    assert health["queue"] is False and health["history"] is True


def test_a_slot_whose_task_the_queue_refused_is_given_back(make_env):
    rt = Runtime(load_settings(make_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                                        COLLECTION_INTERVAL="1", OPTIINFRA_CONFIG="")))
    rt.history()
    agent = ConsumerAgent(rt, "test", threads=0)
    with pytest.raises(redis.ConnectionError):
        agent.tick()
    assert ScheduleSlot.select().count() == 0  # a later tick can still run the slot


# --- (d) PostgreSQL stopped during collections -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fake_vultr", [{"invoices": 20, "items": 3}], indirect=True)
def test_postgresql_outage_during_collections_keeps_every_final_state(
        tmp_path, fake_vultr, own_redis, own_postgres):
    url = own_postgres.create_database("optiinfra")
    env = cluster_env(tmp_path, fake_vultr, own_redis.url, url, VULTR_MAX_RPS="4")
    consumers = [Consumer("headless", env, tmp_path / "c1"), Consumer("headless", env, tmp_path / "c2"),
                 Consumer("huey", env, tmp_path / "c3")]
    history.connect(url)
    try:
        for c in consumers:
            c.start()
        assert wait_for_heartbeats(consumers)
        rt = Runtime(load_settings(dict(env, OPTIINFRA_HOME=str(tmp_path / "producer"))))
        ids = [actions.collect(rt, "vultr").id for _ in range(3)]
        assert wait_until(lambda: sum(run_of(i).status == "running" for i in ids) == 3, 60)
        db.close()
        own_postgres.stop()
        # Longer than HEARTBEAT_STALE_AFTER: every heartbeat is stale when it returns.
        time.sleep(18)
        own_postgres.start_again()
        assert all_final(ids, 120)
        # Every consumer reconnects: it beats again and takes new work.
        assert wait_for_heartbeats(consumers, 30)
        after = actions.collect(rt, "vultr").id
        assert all_final([after], 120)
    finally:
        stop_all(consumers)
        show(consumers)
    for i in [*ids, after]:
        done = run_of(i)
        assert (done.status, done.attempt) == ("success", 1), (i, done.error_message)
        assert done.finished_at and done.metrics_collected > 0
    # No live consumer's run was taken for an orphan when heartbeats resumed.
    assert not RunAttempt.select().where(RunAttempt.error_kind == recovery.LOST).exists()


# --- (e) ClickHouse unreachable ------------------------------------------------------------------


def test_clickhouse_unreachable_is_a_transient_failure_that_retries(make_env, fake_vultr):
    env = make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                   CLICKHOUSE_URL=f"http://127.0.0.1:{free_port()}/optiinfra", MAX_RETRIES="2")
    rt = Runtime(load_settings(env))
    rt.history()
    run = runs.create_run(rt.settings.default_customer_id, "vultr", ("cost",), "cli", 3)
    done = run_inline(rt, run.id)
    assert (done.status, done.attempt, done.error_kind) == ("failed", 3, "transient")
    assert "ClickHouse" in done.error_message and "unreachable" in done.error_message
    assert [a.status for a in runs.attempts(run.id)] == ["retrying", "retrying", "failed"]


# --- lost tasks: queued or retrying runs whose task the queue no longer holds ----------------


def test_a_run_whose_task_was_lost_is_re_enqueued_once(make_env, fake_vultr):
    rt = Runtime(load_settings(make_env(VULTR_API_KEY=fake_vultr.token,
                                        VULTR_API_URL=fake_vultr.url)))
    rt.history()
    waiting = request_collection(rt, rt.settings.default_customer_id, "vultr", None, "cli")
    lost = runs.create_run(rt.settings.default_customer_id, "vultr", ("cost",), "cli", 4)
    CollectionRun.update(status="retrying", attempt=1, task_id="dropped-by-huey",
                         next_attempt_at=utcnow() - timedelta(minutes=5)).where(
        CollectionRun.id == lost.id).execute()
    later = utcnow() + recovery.LOST_AFTER + timedelta(seconds=1)
    assert recovery.requeue_lost(rt, later) == [lost.id]  # the waiting run's task is queued
    assert recovery.requeue_lost(rt, later) == []  # and now so is the lost one's
    pool = WorkerPool(rt, workers=2, kind="test")
    pool.start()
    try:
        assert all_final([waiting.id, lost.id], 60)
    finally:
        pool.stop(timeout=10)
    assert run_of(lost.id).status == run_of(waiting.id).status == "success"
    assert run_of(lost.id).attempt == 2


# --- (g) Prometheus metrics ---------------------------------------------------------------------


@pytest.mark.parametrize("fake_vultr", [{"invoices": 30, "items": 3}], indirect=True)
def test_metrics_port_serves_prometheus_text(tmp_path, fake_vultr):
    port = free_port()
    env = worker_env(os.environ, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                     VULTR_MAX_RPS="4", OPTIINFRA_CONFIG=tmp_path / "none.toml",
                     DEFAULT_CUSTOMER_ID="acme")
    (tmp_path / "none.toml").write_text(NO_SCHEDULES)
    home = tmp_path / "home"
    consumer = Consumer("headless", env, home, extra=("--metrics-port", str(port)))

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                return resp.read().decode()
        except OSError:
            return ""

    try:
        consumer.start()
        assert wait_until(lambda: "optiinfra_workers" in scrape(), 60), consumer.printed()
        assert cli(["collect", "vultr"], env, home).returncode == 0
        # ~8 s of requests: the heartbeat (every 3 s) shows the worker busy meanwhile.
        assert wait_until(lambda: 'optiinfra_workers{state="busy"} 1' in scrape(), 30), scrape()
        assert wait_until(lambda: 'status="success"} 1' in scrape(), 60)
        # The next heartbeat shows the worker idle again.
        text = wait_until(lambda: 'optiinfra_workers{state="busy"} 0' in (t := scrape()) and t, 10)
    finally:
        stop_all([consumer])
        show([consumer])
    assert 'optiinfra_runs_total{provider="vultr",status="success"} 1' in text
    # Label order within a sample is the exposition library's choice.
    assert value(text, "optiinfra_run_duration_seconds_bucket", provider="vultr", le="+Inf") == 1
    assert 'optiinfra_run_duration_seconds_count{provider="vultr"} 1' in text
    assert "optiinfra_queue_depth 0" in text
    assert 'optiinfra_workers{state="idle"} 2' in text
    assert value(text, "optiinfra_last_success_timestamp_seconds", provider="vultr",
                 customer="acme") > 0
    assert 'optiinfra_backend_up{backend="queue"} 1' in text
    for line in text.splitlines():  # every sample is `name{labels} number`
        assert line.startswith("#") or float(line.rsplit(" ", 1)[1]) >= 0


# --- (h) bounded growth -------------------------------------------------------------------------


def test_prune_deletes_runs_older_than_keep_days_once_an_hour(make_env):
    rt = Runtime(load_settings(make_env(OPTIINFRA_KEEP_DAYS="30")))
    rt.history()
    now = utcnow()

    def old_run(days: float, status: str = "success") -> int:
        run = runs.create_run("c", "vultr", ("cost",), "cli", 1)
        RunAttempt.create(run_id=run.id, attempt=1, status=status)
        CollectionRun.update(status=status, finished_at=now - timedelta(days=days)).where(
            CollectionRun.id == run.id).execute()
        return run.id

    old, recent = old_run(31), old_run(29)
    still_running = runs.create_run("c", "vultr", ("cost",), "cli", 1).id
    assert runs.prune(30, now) == 1
    assert run_of(recent) and run_of(still_running)
    assert not CollectionRun.select().where(CollectionRun.id == old).exists()
    assert not RunAttempt.select().where(RunAttempt.run_id == old).exists()

    # The agent prunes once per hour across all consumers: the hour's claim decides.
    agent = ConsumerAgent(rt, "test", threads=0)
    another_old = old_run(40)
    agent.maybe_prune()
    assert not CollectionRun.select().where(CollectionRun.id == another_old).exists()
    yet_another = old_run(50)
    agent.maybe_prune()  # same hour: already claimed
    assert CollectionRun.select().where(CollectionRun.id == yet_another).exists()


def test_huey_keeps_no_results(tmp_path):
    # Huey's result store would grow without end: outcomes live in the history instead.
    rt = Runtime(load_settings({"OPTIINFRA_HOME": str(tmp_path), "REDIS_URL": "redis://x:1/0"}))
    assert rt.huey.results is False


def test_queue_down_at_enqueue_is_backend_unavailable_and_records_nothing(make_env):
    rt = Runtime(load_settings(make_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")))
    rt.history()
    with pytest.raises(BackendUnavailable, match="queue is unreachable"):
        actions.collect(rt, "vultr")
    assert CollectionRun.select().count() == 0
