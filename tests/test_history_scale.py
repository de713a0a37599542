"""What keeps a history of millions of runs fast, on SQLite and PostgreSQL: the index migration on
a populated table, pruning in batches, and the last hour's stats counted by the database.

The figures themselves (10 million runs) are bench/scale_history.py's; these check behaviour.
"""

import random
import threading
from datetime import datetime, timedelta
from fractions import Fraction
from math import floor

import pytest

from optiinfra_tui.storage import history
from optiinfra_tui.storage.history import CollectionRun, RunAttempt, SchemaVersion
from optiinfra_tui.worker import monitor, runs

NOW = datetime(2026, 11, 20, 12, 0, 30, 250000)


def seed(n: int, rng: random.Random, now: datetime = NOW) -> None:
    """n runs finished over the last 70 minutes (some not finished), each with an attempt."""
    rows = []
    for i in range(n):
        status = rng.choice(["success"] * 6 + ["failed", "canceled", "running", "retrying"])
        finished = now - timedelta(seconds=rng.uniform(0, 70 * 60))
        final = status in ("success", "failed", "canceled")
        rows.append(dict(
            customer_id=f"c{i % 7}", provider="vultr", data_types="cost", trigger="schedule",
            status=status, attempt=1, max_attempts=3, queued_at=finished - timedelta(seconds=9),
            metrics_collected=rng.randint(0, 50), finished_at=finished if final else None,
            duration_ms=rng.choice([None, rng.randint(100, 9000)]) if final else None,
            retry_of=i if i % 50 == 49 else None))
    with history.db.atomic():
        for start in range(0, n, 500):
            CollectionRun.insert_many(rows[start:start + 500]).execute()
        ids = [r.id for r in CollectionRun.select(CollectionRun.id)]
        for start in range(0, len(ids), 500):
            RunAttempt.insert_many([dict(run_id=i, attempt=1, status="success")
                                    for i in ids[start:start + 500]]).execute()


def expected_stats(now: datetime, window: int = 60) -> monitor.Stats:
    """The stats as the dashboard means them, computed here row by row."""
    minute = now.replace(second=0, microsecond=0)
    since = (minute if minute == now else minute + timedelta(minutes=1)) - timedelta(minutes=window)
    inside = [r for r in CollectionRun.select() if r.finished_at and r.finished_at >= since]
    per_minute = [0] * window
    for r in inside:
        per_minute[int((r.finished_at - since).total_seconds() // 60)] += 1
    ok = [r for r in inside if r.status == "success"]
    bad = [r for r in inside if r.status == "failed"]
    durations = sorted(r.duration_ms for r in ok if r.duration_ms is not None)

    def rank(q: Fraction):  # nearest rank, q * (n - 1) rounded half up
        return durations[floor(q * (len(durations) - 1) + Fraction(1, 2))] if durations else None

    return monitor.Stats(
        window, len(inside), len(ok), len(bad),
        len(ok) / (len(ok) + len(bad)) if ok or bad else None, rank(Fraction(1, 2)),
        rank(Fraction(19, 20)),
        sum(r.metrics_collected for r in inside), per_minute,
        max((r.finished_at for r in inside), default=None))


def test_stats_are_counted_by_the_database_as_row_by_row(history_db):
    seed(700, random.Random(3))
    got = monitor.stats(now=NOW)
    assert got == expected_stats(NOW)
    assert got.runs > 300 and got.p50_ms is not None and sum(got.runs_per_minute) == got.runs
    # The window starts on a minute: later in the same minute nothing moves.
    assert monitor.stats(now=NOW + timedelta(seconds=20)) == got
    assert monitor.stats(now=NOW + timedelta(minutes=5)) == expected_stats(NOW + timedelta(minutes=5))


def test_stats_of_an_empty_hour(history_db):
    assert monitor.stats(now=NOW) == monitor.Stats.empty()


def index_names() -> set[str]:
    if isinstance(history.db.obj, history.pw.PostgresqlDatabase):
        sql = "SELECT indexname FROM pg_indexes WHERE tablename IN (%s, %s)"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN (?, ?)"
    return {name for (name,) in history.db.execute_sql(sql, ("collection_runs", "run_attempts"))}


def before_the_indexes() -> None:
    """The database as the version before the index step left it: without the indexes that
    step adds, with those it drops."""
    for name in history.INDEXES_ADDED:
        history.db.execute_sql(f"DROP INDEX {name}")
    for name, target in history.INDEXES_DROPPED.items():
        history.db.execute_sql(f"CREATE INDEX {name} ON {target}")
    SchemaVersion.update(version=history.INDEXES_STEP - 1).execute()


def contents() -> tuple[list, list]:
    return (list(CollectionRun.select().order_by(CollectionRun.id).tuples()),
            list(RunAttempt.select().order_by(RunAttempt.id).tuples()))


def test_the_index_migration_on_a_populated_history(history_db):
    seed(3000, random.Random(5))
    before_the_indexes()
    before = contents()
    assert set(history.INDEXES_ADDED).isdisjoint(index_names())
    assert history.migrate(history.db.obj) == history.SCHEMA_VERSION == history.INDEXES_STEP
    names = index_names()
    assert set(history.INDEXES_ADDED) <= names and set(history.INDEXES_DROPPED).isdisjoint(names)
    assert contents() == before and len(before[0]) == 3000 and len(before[1]) == 3000
    # The retries of a run come through the new index, and still right.
    retry_of = [f.name for f in CollectionRun._meta.sorted_fields].index("retry_of")
    assert {r.id for r in CollectionRun.select().where(CollectionRun.retry_of == 49)} == \
        {r[0] for r in before[0] if r[retry_of] == 49} != set()


def test_an_interrupted_concurrent_index_build_is_built_again(postgres_url):
    history.connect(postgres_url)
    try:
        seed(200, random.Random(7))
        for i in range(1, 3):  # two runs retrying the same run: a unique index can't be built
            CollectionRun.update(retry_of=1).where(CollectionRun.id == i).execute()
        before_the_indexes()
        name = next(iter(history.INDEXES_ADDED))
        with pytest.raises(history.pw.IntegrityError):
            history.db.execute_sql(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON "
                                   f"{history.INDEXES_ADDED[name]}")
        invalid = "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid " \
                  "WHERE c.relname = %s"
        assert history.db.execute_sql(invalid, (name,)).fetchone() == (False,)
        history.migrate(history.db.obj)
        assert history.db.execute_sql(invalid, (name,)).fetchone() == (True,)
    finally:
        history.db.close()


def test_migrators_starting_together_take_turns(postgres_url):
    history.connect(postgres_url)
    try:
        before_the_indexes()
        history.db.close()
        results, errors = [], []

        def start() -> None:
            try:
                results.append(history.migrate(history.db.obj))
            except Exception as exc:  # pragma: no cover - what the assertion reports
                errors.append(exc)
            finally:
                history.close_connection()

        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == [] and results == [history.SCHEMA_VERSION] * 4
        assert SchemaVersion.select().count() == 1
        assert set(history.INDEXES_ADDED) <= index_names()
    finally:
        history.db.close()


def test_prune_deletes_in_batches_oldest_first(history_db):
    now = datetime(2026, 11, 20, 12, 0)

    def run(days: float, status: str = "success") -> int:
        r = runs.create_run("c", "vultr", ("cost",), "cli", 1)
        RunAttempt.create(run_id=r.id, attempt=1, status=status)
        CollectionRun.update(status=status, finished_at=now - timedelta(days=days)).where(
            CollectionRun.id == r.id).execute()
        return r.id

    old = [run(31 + i / 10, ("success", "failed", "canceled")[i % 3]) for i in range(7)]
    kept = [run(29), run(31, "running"), run(40, "retrying")]
    batches = []
    assert runs.prune(30, now, batch=3, between=lambda: batches.append(
        CollectionRun.select().count())) == 7
    # 3 + 3 + 1: two full batches, each followed by the caller's turn, then the rest.
    assert batches == [len(old) + len(kept) - 3, len(old) + len(kept) - 6]
    assert [r.id for r in CollectionRun.select().order_by(CollectionRun.id)] == kept
    assert {a.run_id for a in RunAttempt.select()} == set(kept)
    # Batches sized by their time: more runs than the first batch, all of them go.
    CollectionRun.insert_many([dict(customer_id="c", provider="vultr", data_types="cost",
                                    trigger="cli", status="success",
                                    finished_at=now - timedelta(days=45, minutes=i))
                               for i in range(runs.PRUNE_BATCH * 3)]).execute()
    assert runs.prune(30, now) == runs.PRUNE_BATCH * 3
    assert [r.id for r in CollectionRun.select().order_by(CollectionRun.id)] == kept


@pytest.mark.parametrize("durations,p50,p95", [([700], 700, 700), ([700, 300], 700, 700),
                                               ([5, 1, 4, 2, 3], 3, 5)])
def test_percentiles_of_a_few_runs(history_db, durations, p50, p95):
    for _ in durations:
        runs.create_run("c", "vultr", ("cost",), "cli", 1)
    CollectionRun.insert(customer_id="c", provider="vultr", data_types="cost", trigger="cli",
                         status="failed", finished_at=NOW, duration_ms=1).execute()  # not timed
    for run, ms in zip(CollectionRun.select().where(CollectionRun.status == "queued"),
                       durations, strict=True):
        CollectionRun.update(status="success", finished_at=NOW - timedelta(seconds=ms),
                             duration_ms=ms).where(CollectionRun.id == run.id).execute()
    got = monitor.stats(now=NOW)
    assert (got.p50_ms, got.p95_ms, got.succeeded, got.failed) == (p50, p95, len(durations), 1)
