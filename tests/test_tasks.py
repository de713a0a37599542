"""Tasks end to end in one process: a real queue (SQLite or Redis), real history (SQLite or
PostgreSQL), real chDB and a real Vultr-shaped HTTP server."""

import gc
import sqlite3
from decimal import Decimal

import pytest
from services import wait_until

from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import actions, collection, runs
from optiinfra_tui.worker.collection import request_collection
from optiinfra_tui.worker.pool import WorkerPool
from optiinfra_tui.worker.runtime import Runtime


@pytest.fixture(params=["sqlite", "redis+postgresql"])
def backend_env(request, make_env):
    if request.param == "sqlite":
        return make_env
    redis_url = request.getfixturevalue("redis_url")
    pg_url = request.getfixturevalue("postgres_url")
    return lambda **extra: make_env(REDIS_URL=redis_url, DATABASE_URL=pg_url, **extra)


def start(env: dict) -> tuple[Runtime, WorkerPool]:
    rt = Runtime(load_settings(env))
    rt.history()
    pool = WorkerPool(rt, workers=2, kind="test")
    pool.start()
    return rt, pool


def finished(run_id: int, timeout: float = 30):
    return wait_until(lambda: (r := runs.get_run(run_id)) and r.is_final and r, timeout)


def customer_total(rt, customer_id: str):
    for t in rt.metrics().costs(by="customer"):
        if t.key == customer_id:
            return t.billed_cost + t.estimated_cost, t.rows
    return Decimal(0), 0


def test_collection_through_the_queue_matches_the_server_to_the_cent(backend_env, fake_vultr):
    env = backend_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    rt, pool = start(env)
    try:
        customer = rt.settings.default_customer_id
        run = actions.collect(rt, "vultr")
        done = finished(run.id)
        assert done.status == "success", done.error_message
        assert done.attempt == 1 and done.task_id == run.task_id
        assert done.metrics_collected == fake_vultr.line_count()
        total, rows = customer_total(rt, customer)
        assert total == fake_vultr.total_cost()
        assert rows == fake_vultr.line_count()

        again = finished(actions.collect(rt, "vultr").id)
        assert again.status == "success"
        assert customer_total(rt, customer) == (total, rows)
    finally:
        pool.stop(timeout=10)


def test_missing_key_fails_at_once_naming_the_variable(backend_env):
    rt, pool = start(backend_env(VULTR_API_URL="http://127.0.0.1:9/v2"))
    try:
        done = finished(actions.collect(rt, "vultr").id)
        assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "config")
        assert "VULTR_API_KEY" in done.error_message
        assert len(runs.attempts(done.id)) == 1
    finally:
        pool.stop(timeout=10)


def test_wrong_key_is_an_auth_error_without_retry(make_env, fake_vultr):
    rt, pool = start(make_env(VULTR_API_KEY="wrong-key-123", VULTR_API_URL=fake_vultr.url))
    try:
        done = finished(actions.collect(rt, "vultr").id)
        assert (done.status, done.attempt, done.error_kind) == ("failed", 1, "auth")
        assert "wrong-key-123" not in done.error_message
    finally:
        pool.stop(timeout=10)


def test_transient_failures_retry_then_succeed(make_env, fake_vultr):
    rt, pool = start(make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url))
    try:
        # More 503s than the client retries inside one request: the first attempt fails.
        fake_vultr.fail_503(times=8)
        done = finished(actions.collect(rt, "vultr").id, timeout=60)
        assert done.status == "success", done.error_message
        tries = runs.attempts(done.id)
        assert tries[0].status == "retrying" and tries[0].error_kind == "transient"
        assert tries[-1].status == "success" and len(tries) >= 2
    finally:
        pool.stop(timeout=10)


def test_transient_failures_give_up_after_max_retries(make_env, fake_vultr):
    rt, pool = start(make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                              MAX_RETRIES="2"))
    try:
        fake_vultr.fail_503(times=float("inf"))
        done = finished(actions.collect(rt, "vultr").id, timeout=90)
        assert (done.status, done.attempt, done.error_kind) == ("failed", 3, "transient")
        assert done.error_message.endswith("Gave up after 3 attempts (MAX_RETRIES=2).")
        assert "failed after" not in done.error_message  # one count, not two
        assert [a.status for a in runs.attempts(done.id)] == ["retrying", "retrying", "failed"]
    finally:
        pool.stop(timeout=10)


def test_revoked_run_never_runs(make_env, fake_vultr):
    rt = Runtime(load_settings(make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)))
    run = actions.collect(rt, "vultr")  # no consumer yet: it waits in the queue
    assert actions.revoke(rt, run.id).status == "canceled"
    pool = WorkerPool(rt, workers=1, kind="test")
    pool.start()
    try:
        marker = finished(actions.collect(rt, "vultr").id)
        assert marker.status == "success"
        assert runs.get_run(run.id).status == "canceled" and runs.attempts(run.id) == []
    finally:
        pool.stop(timeout=10)


def test_retry_action_links_a_new_run(make_env):
    rt, pool = start(make_env(VULTR_API_URL="http://127.0.0.1:9/v2"))
    try:
        failed = finished(actions.collect(rt, "vultr").id)
        assert actions.can_retry(failed)
        again = actions.retry(rt, failed.id)
        assert again.retry_of == failed.id and again.trigger == "retry"
        assert finished(again.id).status == "failed"
    finally:
        pool.stop(timeout=10)


def test_scheduled_collection_fans_out_to_every_customer(make_env, fake_vultr, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('schedules = []\n[customers.acme]\nvultr_api_key_env = "ACME_KEY"\n')
    rt, pool = start(make_env(VULTR_API_KEY=fake_vultr.token, ACME_KEY=fake_vultr.token,
                              VULTR_API_URL=fake_vultr.url, OPTIINFRA_CONFIG=str(cfg)))
    try:
        rt.tasks.scheduled_collection_task("vultr", ["cost"], schedule="vultr-cost")
        found = wait_until(lambda: len(runs.list_runs(provider="vultr")) == 2 and all(
            r.is_final for r in runs.list_runs()), timeout=30)
        assert found
        got = runs.list_runs()
        assert {r.customer_id for r in got} == {rt.settings.default_customer_id, "acme"}
        assert {(r.trigger, r.schedule, r.status) for r in got} == {("schedule", "vultr-cost", "success")}
    finally:
        pool.stop(timeout=10)


def test_secrets_never_reach_queue_history_or_logs(make_env, fake_vultr):
    from optiinfra_tui.logs import setup_logging

    env = make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    settings = load_settings(env)
    setup_logging(settings)
    rt = Runtime(settings)
    run = request_collection(rt, settings.default_customer_id, "vultr", None, trigger="cli")
    queue_db = sqlite3.connect(settings.home / "queue.db")
    payloads = b"".join(bytes(r[0]) for r in queue_db.execute("select data from task"))
    assert payloads and fake_vultr.token.encode() not in payloads
    fake_vultr.fail_503(times=8)
    pool = WorkerPool(rt, workers=1, kind="test")
    pool.start()
    try:
        done = finished(run.id, timeout=60)
        assert done.status == "success"
    finally:
        pool.stop(timeout=10)
    token = fake_vultr.token
    for r in runs.list_runs(limit=100):
        assert token not in repr(r.__data__)
    for a in runs.attempts(run.id):
        assert token not in repr(a.__data__)
    assert token not in settings.log_path.read_text()


def test_redis_queue_payload_has_no_secret(make_env, redis_url, fake_vultr):
    import redis

    env = make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url, REDIS_URL=redis_url)
    rt = Runtime(load_settings(env))
    request_collection(rt, rt.settings.default_customer_id, "vultr", "cost,resource", trigger="cli")
    client = redis.Redis.from_url(redis_url)
    blobs = [client.lrange(k, 0, -1) for k in client.keys("*") if client.type(k) == b"list"]
    flat = b"".join(b for blob in blobs for b in blob)
    assert flat and fake_vultr.token.encode() not in flat


def test_a_collection_leaves_the_gc_thresholds_as_start_up_set_them(make_env, fake_vultr):
    # Process-wide settings are made once at start-up (startup.prepare_process): a collection
    # in one worker must not change them under the other threads (the UI's included).
    rt = Runtime(load_settings(make_env(VULTR_API_KEY=fake_vultr.token,
                                        VULTR_API_URL=fake_vultr.url)))
    rt.history()
    run = runs.create_run(rt.settings.default_customer_id, "vultr", ("cost",), "cli", 1)
    # A low young threshold, so that passes surely run during this small collection (at the
    # usual 700, a run that frees what it allocates may see none), and one a collection that
    # raised it again (startup.prepare_process) would change.
    started_with = gc.get_threshold()
    before = (50, *started_with[1:])
    gc.set_threshold(*before)
    seen: set[tuple[int, ...]] = set()

    def watch(phase: str, info: dict) -> None:
        seen.add(gc.get_threshold())

    gc.callbacks.append(watch)
    try:
        outcome = collection.execute_run(rt, run.id)
        after = gc.get_threshold()
    finally:
        gc.callbacks.remove(watch)
        gc.set_threshold(*started_with)
    assert outcome.status == "success", outcome.message
    assert seen == {before}  # passes ran during the collection, all under the same thresholds
    assert after == before


class _Writer:
    """position/stored/flush as BufferedWriter has them; stores only when told."""

    def __init__(self, fail: bool = False) -> None:
        self.position = self.stored = 0
        self.fail = fail

    def write(self, n: int) -> None:
        self.position += n

    def flush(self) -> None:
        if self.fail:
            raise RuntimeError("insert failed")
        self.stored = self.position


class _Marks:
    def __init__(self) -> None:
        self.marked: list[str] = []

    def mark_invoices_complete(self, customer_id, provider, invoice_ids) -> None:
        self.marked += invoice_ids


def _lines(invoice: str, n: int = 2) -> list:
    return [type("Row", (), {"invoice_id": invoice})() for _ in range(n)]


def test_invoices_are_marked_complete_only_once_their_lines_are_stored():
    writer, store = _Writer(), _Marks()
    run = type("Run", (), {"customer_id": "c", "provider": "vultr", "id": 1})()
    tracker = collection._InvoiceTracker(store, writer, run)
    for i in range(150):
        writer.write(2)
        tracker.saw(_lines(str(i)))
    assert store.marked == []  # 149 complete, none stored yet: no flush is forced
    writer.stored = 2 * 120  # inserts stored the lines of invoices 0-119 (and 120 is current)
    writer.write(2)
    tracker.saw(_lines("150"))
    assert store.marked == [str(i) for i in range(119)]  # 119's end is past what is stored
    tracker.finish(last_complete=True)
    assert store.marked == [str(i) for i in range(151)]
    assert writer.stored == writer.position


def test_no_invoice_is_marked_when_the_final_flush_fails():
    writer, store = _Writer(fail=True), _Marks()
    run = type("Run", (), {"customer_id": "c", "provider": "vultr", "id": 1})()
    tracker = collection._InvoiceTracker(store, writer, run)
    for i in range(3):
        writer.write(2)
        tracker.saw(_lines(str(i)))
    tracker.finish(last_complete=True)
    assert store.marked == []

