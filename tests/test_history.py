"""History on SQLite and PostgreSQL: the run lifecycle, migrations, schedule slots."""

import threading
from datetime import datetime, timedelta

import peewee as pw
import pytest

from optiinfra_tui.settings import Schedule
from optiinfra_tui.storage import history
from optiinfra_tui.storage.history import CollectionRun, RunAttempt, SchemaVersion
from optiinfra_tui.worker import runs, schedules


def test_migrate_sets_the_version_and_is_idempotent(history_db):
    assert SchemaVersion.get().version == history.SCHEMA_VERSION
    assert history.migrate(history.db.obj) == history.SCHEMA_VERSION
    assert SchemaVersion.select().count() == 1


def test_migration_applies_only_missing_steps(history_db, monkeypatch):
    calls = []
    steps = dict(history.MIGRATIONS)
    steps[history.SCHEMA_VERSION + 1] = lambda database: calls.append(database)
    monkeypatch.setattr(history, "MIGRATIONS", steps)
    assert history.migrate(history.db.obj) == history.SCHEMA_VERSION + 1
    assert history.migrate(history.db.obj) == history.SCHEMA_VERSION + 1
    assert len(calls) == 1


def test_a_run_through_retry_to_success(history_db):
    run = runs.create_run("acme", "vultr", ["cost", "account"], "cli", max_attempts=3)
    assert (run.status, run.attempt, run.types) == ("queued", 0, ("cost", "account"))
    runs.attach_task(run.id, "task-1")

    first = runs.start_attempt(run.id, "h:1:Worker-1")
    assert (first.status, first.attempt) == ("running", 1)
    assert runs.start_attempt(run.id, "h:2:Worker-1") is None  # already running elsewhere
    next_at = runs.schedule_retry(first, "transient", "HTTP 503", delay=30, rows=5)
    again = runs.get_run(run.id)
    assert again.status == "retrying" and again.next_attempt_at == next_at
    assert again.metrics_collected == 5

    second = runs.start_attempt(run.id, "h:1:Worker-2")
    assert second.attempt == 2 and second.next_attempt_at is None
    runs.finish_success(second, rows=10)
    done = runs.get_run(run.id)
    assert (done.status, done.metrics_collected, done.task_id) == ("success", 15, "task-1")
    assert done.duration_ms is not None and done.finished_at is not None
    tries = runs.attempts(run.id)
    assert [(a.attempt, a.status, a.rows, a.error_kind) for a in tries] == [
        (1, "retrying", 5, "transient"), (2, "success", 10, None)]
    assert runs.start_attempt(run.id, "w") is None  # final runs never start again


def test_cancel_only_before_start(history_db):
    run = runs.create_run("acme", "vultr", ["cost"], "manual", 1)
    assert runs.cancel_run(run.id)
    assert runs.get_run(run.id).status == "canceled"
    assert runs.start_attempt(run.id, "w") is None
    other = runs.create_run("acme", "vultr", ["cost"], "manual", 1)
    runs.start_attempt(other.id, "w")
    assert not runs.cancel_run(other.id)


def test_failure_and_delete(history_db):
    run = runs.create_run("acme", "vultr", ["cost"], "manual", 1)
    started = runs.start_attempt(run.id, "w")
    runs.finish_failure(started, "auth", "Vultr refused the key")
    got = runs.get_run(run.id)
    assert (got.status, got.error_kind, got.error_message) == ("failed", "auth", "Vultr refused the key")
    runs.delete_run(run.id)
    assert runs.get_run(run.id) is None
    assert RunAttempt.select().where(RunAttempt.run_id == run.id).count() == 0


def test_list_runs_filters_and_keyset_pages(history_db):
    for i in range(30):
        r = runs.create_run("acme" if i % 2 else "globex", "vultr", ["cost"], "schedule", 1)
        if i % 3 == 0:
            runs.finish_failure(runs.start_attempt(r.id, "w"), "data", f"bad page {i}")
    page1 = runs.list_runs(limit=10)
    page2 = runs.list_runs(limit=10, before_id=page1[-1].id)
    assert [r.id for r in page1] == sorted([r.id for r in page1], reverse=True)
    assert page2[0].id < page1[-1].id and len(page2) == 10
    assert {r.customer_id for r in runs.list_runs(customer_id="acme", limit=100)} == {"acme"}
    failed = runs.list_runs(status="failed", limit=100)
    assert len(failed) == 10 and all(r.status == "failed" for r in failed)
    assert [r.error_message for r in runs.list_runs(text="page 27")] == ["bad page 27"]


def test_schedule_slot_is_claimed_once_across_threads(history_db):
    slot = datetime(2026, 11, 29, 12, 15)
    wins = []
    barrier = threading.Barrier(8)

    def contend(i):
        barrier.wait()
        wins.append(schedules.claim("vultr-cost", slot, f"consumer-{i}"))
        history.db.close()

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(wins) == [False] * 7 + [True]


def test_due_claims_each_slot_once_and_skips_paused(history_db):
    every_15 = Schedule("cost", "vultr", ("cost",), interval=900)
    cron = Schedule("nightly", "vultr", ("resource",), cron="0 2 * * *")
    now = datetime(2026, 11, 29, 2, 0, 30)
    got = schedules.due((every_15, cron), now, "a")
    assert [(s.name, slot) for s, slot in got] == [
        ("cost", datetime(2026, 11, 29, 2, 0)), ("nightly", datetime(2026, 11, 29, 2, 0))]
    assert schedules.due((every_15, cron), now + timedelta(seconds=20), "b") == []
    schedules.set_paused(["cost"], True)
    assert schedules.paused_schedules() == {"cost"}
    assert schedules.due((every_15,), datetime(2026, 11, 29, 2, 15, 1), "a") == []
    schedules.set_paused(["cost"], False)
    assert len(schedules.due((every_15,), datetime(2026, 11, 29, 2, 15, 2), "a")) == 1


def test_unreachable_postgres_is_a_clear_error():
    from services import free_port

    from optiinfra_tui.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable) as err:
        history.connect(f"postgresql://app:s3cret@127.0.0.1:{free_port()}/nope")
    assert "s3cret" not in str(err.value) and "DATABASE_URL" in str(err.value)


def test_peewee_models_cover_design_columns():
    cols = set(CollectionRun._meta.columns)
    for name in ("id", "task_id", "customer_id", "provider", "data_types", "trigger", "status",
                 "attempt", "max_attempts", "metrics_collected", "error_kind", "error_message",
                 "queued_at", "started_at", "finished_at", "duration_ms", "worker",
                 "next_attempt_at"):
        assert name in cols
    assert isinstance(CollectionRun.status, pw.CharField)
