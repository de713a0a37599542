"""The history's group commit on a real PostgreSQL: writes of many tasks in one transaction,
claims that agree on one winner, nothing lost to a bad write or an outage; and the fan-out
that records and enqueues its runs a chunk at a time."""

from __future__ import annotations

import shutil
import threading

import peewee as pw
import pytest
from services import PostgresServer, _pg_bindir, free_port, missing, pg_root

from optiinfra_tui.errors import BackendUnavailable
from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage import history
from optiinfra_tui.storage.group_commit import GroupCommit
from optiinfra_tui.storage.history import BackendHealth, CollectionRun, RunAttempt, db
from optiinfra_tui.worker import collection, runs
from optiinfra_tui.worker.health import _RECORD
from optiinfra_tui.worker.runtime import Runtime


@pytest.fixture
def pg(postgres_url):
    history.connect(postgres_url)
    yield postgres_url
    history.db.close()


def xmins(model, ids) -> set[int]:
    """The transactions that last wrote these rows (PostgreSQL's xmin)."""
    key = model._meta.primary_key
    return {row[0] for row in model.select(pw.SQL("xmin::text::bigint")).where(key.in_(ids))
            .tuples()}


def queued(n: int) -> list[CollectionRun]:
    return [runs.create_run("acme", "vultr", ["cost"], "cli", 3) for _ in range(n)]


def test_writes_that_gather_share_one_transaction(pg):
    writer = GroupCommit(db.obj, linger=60)  # nothing is written until flushed
    try:
        names = [f"vultr:c{i}" for i in range(50)]
        for name in names:
            writer.write(_RECORD, (name, True, "ok", history.utcnow()), wait=False)
        assert BackendHealth.select().count() == 0
        assert writer.flush(30)
        assert len(xmins(BackendHealth, names)) == 1
    finally:
        writer.stop()


def test_a_run_ends_in_the_same_transaction_as_the_next_claim(pg):
    first, second = queued(2)
    writer = history.group_writer()
    done = runs.start_attempt(first.id, "h:1:Worker-1")
    writer.linger = 60  # however slow this machine is, the end waits for the claim
    runs.finish_success(done, rows=7, wait=False)
    claimed = runs.start_attempt(second.id, "h:1:Worker-1")
    assert claimed.status == "running"
    assert writer.flush(10)
    assert runs.get_run(first.id).status == "success"
    assert xmins(CollectionRun, [first.id]) == xmins(CollectionRun, [second.id])


def test_claims_from_many_threads_each_get_their_run_and_one_attempt(pg):
    made = queued(20)
    got: dict[int, CollectionRun | None] = {}

    def claim(run_id: int) -> None:
        got[run_id] = runs.start_attempt(run_id, f"h:1:{threading.current_thread().name}")

    threads = [threading.Thread(target=claim, args=(r.id,)) for r in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {i: (r.id, r.status, r.attempt) for i, r in got.items()} == {
        r.id: (r.id, "running", 1) for r in made}
    assert [(a.run_id, a.attempt) for a in RunAttempt.select().order_by(RunAttempt.run_id)] == [
        (r.id, 1) for r in made]


def test_two_claims_of_one_run_have_one_winner(pg):
    (run,) = queued(1)
    results = []
    barrier = threading.Barrier(8)

    def claim(i: int) -> None:
        barrier.wait()
        results.append(runs.start_attempt(run.id, f"h:{i}:Worker-1"))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [r for r in results if r is not None]
    assert len(results) == 8 and len(winners) == 1
    assert RunAttempt.select().where(RunAttempt.run_id == run.id).count() == 1


def test_writes_to_one_run_keep_their_order(pg):
    (run,) = queued(1)
    started = runs.start_attempt(run.id, "h:1:Worker-1")
    runs.add_requests(run.id, 3)  # same row as the end: they can't share a statement
    runs.finish_failure(started, "auth", "refused", wait=True)
    done = runs.get_run(run.id)
    assert (done.requests, done.status, done.error_kind) == (3, "failed", "auth")


def test_the_later_check_of_a_name_wins_within_a_batch(pg):
    writer = GroupCommit(db.obj, linger=60)
    try:
        writer.write(_RECORD, ("vultr:acme", False, "HTTP 503", history.utcnow()), wait=False)
        writer.write(_RECORD, ("vultr:acme", True, "collected 4 rows", history.utcnow()),
                     wait=False)
        assert writer.flush(30)
    finally:
        writer.stop()
    row = BackendHealth.get_by_id("vultr:acme")
    assert (row.ok, row.message) == (True, "collected 4 rows")


def test_a_write_the_database_refuses_fails_alone(pg):
    made = queued(3)
    started = [runs.start_attempt(r.id, "h:1:Worker-1") for r in made]
    runs.finish_success(started[0], rows=1, wait=False)
    with pytest.raises(ValueError, match="NUL"):  # text PostgreSQL can't store
        runs.finish_failure(started[1], "data", "bad \x00 page", wait=True)
    runs.finish_success(started[2], rows=2, wait=True)
    assert [runs.get_run(r.id).status for r in made] == ["success", "running", "success"]


@pytest.fixture
def own_postgres():
    if _pg_bindir() is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl)")
    root = pg_root()
    server = PostgresServer(root / "cluster")
    server.start()
    history.connect(server.create_database("optiinfra"))
    yield server
    history.db.close()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_through_an_outage_claims_fail_at_once_and_ends_wait_for_the_database(own_postgres):
    made = queued(2)
    started = runs.start_attempt(made[0].id, "h:1:Worker-1")
    own_postgres.stop()
    runs.finish_success(started, rows=5, wait=False)  # kept until the database is back
    with pytest.raises(history.UNAVAILABLE):
        runs.start_attempt(made[1].id, "h:1:Worker-1")
    own_postgres.start_again()
    assert history.flush_writes(60)
    db.close()  # this thread's connection died with the server
    assert (runs.get_run(made[0].id).status, runs.get_run(made[0].id).metrics_collected) == (
        "success", 5)
    assert runs.start_attempt(made[1].id, "h:1:Worker-1").status == "running"


# --- the fan-out: a chunk of runs per INSERT, its tasks in one round trip ----------------------


def runtime(make_env, pg_url, redis_url, customers: int) -> Runtime:
    toml = "schedules = []\n" + "".join(
        f'[customers.c{i}]\nvultr_api_key_env = "KEY_{i}"\n' for i in range(customers))
    env = make_env(DATABASE_URL=pg_url, REDIS_URL=redis_url,
                   **{f"KEY_{i}": f"k{i}" for i in range(customers)})
    path = env["OPTIINFRA_HOME"] + ".toml"
    with open(path, "w") as f:
        f.write(toml)
    rt = Runtime(load_settings({**env, "OPTIINFRA_CONFIG": path}))
    rt.history()
    return rt


def test_a_fan_out_records_every_run_before_its_task_is_queued(make_env, pg, redis_url,
                                                              monkeypatch):
    monkeypatch.setattr(collection, "FAN_OUT_CHUNK", 4)  # 10 customers: chunks of 4, 4, 2
    rt = runtime(make_env, pg, redis_url, 10)
    out = collection.fan_out(rt, "vultr", ["cost"], trigger="schedule", schedule="s")
    assert not out.errors and len(out.runs) == 10
    by_task = {t.id: t.kwargs["run_id"] for t in rt.huey.pending()}
    stored = {r.task_id: r for r in CollectionRun.select()}
    assert by_task == {task_id: r.id for task_id, r in stored.items()}
    assert sorted(r.customer_id for r in stored.values()) == sorted(f"c{i}" for i in range(10))
    assert {(r.status, r.trigger, r.schedule) for r in stored.values()} == {
        ("queued", "schedule", "s")}


def test_a_fan_out_the_queue_refuses_records_nothing(make_env, pg):
    rt = runtime(make_env, pg, f"redis://127.0.0.1:{free_port()}/0", 3)
    out = collection.fan_out(rt, "vultr", ["cost"], trigger="schedule", schedule="s")
    assert out.runs == [] and len(out.errors) == 1
    assert isinstance(out.errors[0], BackendUnavailable)
    assert CollectionRun.select().count() == 0
    assert "queue is unreachable" in str(out.errors[0])
