"""The worker side of bench/queue_latency.py: a no-op task for ours, plain Huey, Celery, and
Celery recording its runs in PostgreSQL as the stack we replace did.

Each task stamps time.monotonic() where its work begins (CLOCK_MONOTONIC is one clock for
every process on the machine) and reports when it ends: every task in 'ping' mode, once per
BENCH_BURST tasks in 'burst' mode, so reporting costs a burst nothing. Run a worker with
`python -c "import _queue_workers as w; w.main()" KIND` (cwd bench/, KIND one of DBS): tasks
must live in an importable module, never __main__.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from functools import cache

import redis

REPORT_DB = 15  # reports travel through their own database of the same Redis
DBS = {"ours": 0, "plain": 1, "celery": 2, "celery_history": 3}


def redis_url(db: int) -> str:
    return f"{os.environ['BENCH_REDIS']}/{db}"


class Reporter:
    """Sends start stamps (ping) and burst ends back to the producer."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.conn = redis.Redis.from_url(redis_url(REPORT_DB), socket_timeout=None)
        self.burst = int(os.environ.get("BENCH_BURST", "10000"))
        self.count = 0
        self.lock = threading.Lock()

    def ended(self, seq: int, started: float, mode: str, picked: float | None = None) -> None:
        """`picked`: when the worker began the task, if earlier than `started` (ours)."""
        if mode == "ping":
            picked = started if picked is None else picked
            self.conn.rpush(f"bench:{self.kind}:ping", f"{seq} {started!r} {picked!r}")
            return
        with self.lock:
            self.count += 1
            done = self.count % self.burst == 0
        if done:
            self.conn.rpush(f"bench:{self.kind}:burst", repr(time.monotonic()))


# --- plain Huey: a bare RedisHuey task ---------------------------------------------------------


@cache
def plain_huey():
    from huey import RedisHuey

    huey = RedisHuey("bench-plain", url=redis_url(DBS["plain"]))
    reporter = Reporter("plain") if os.environ.get("BENCH_ROLE") == "plain" else None

    @huey.task()
    def noop(seq, mode):
        started = time.monotonic()
        reporter.ended(seq, started, mode)

    return huey, noop


# --- Celery 5, threads pool, Redis broker ------------------------------------------------------


@cache
def celery_app():
    from celery import Celery

    app = Celery("bench", broker=redis_url(DBS["celery"]))
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                    worker_redirect_stdouts=False, broker_connection_retry_on_startup=True)
    reporter = Reporter("celery") if os.environ.get("BENCH_ROLE") == "celery" else None

    @app.task(name="bench.noop")
    def noop(seq, mode):
        started = time.monotonic()
        reporter.ended(seq, started, mode)

    return app, noop


# --- Celery with history: a collection_history row per task, as the old stack kept ---------------

HISTORY_TABLE = """
CREATE TABLE IF NOT EXISTS collection_history (
    id SERIAL PRIMARY KEY, task_id VARCHAR(64), customer_id VARCHAR(64), provider VARCHAR(32),
    data_types VARCHAR(128), status VARCHAR(16) NOT NULL, started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP, duration_ms INTEGER, records INTEGER, error TEXT)"""


class HistoryRows:
    """The old stack's bookkeeping, as cheap as it gets: one autocommit psycopg2 connection per
    worker thread, an INSERT when the task starts and an UPDATE when it ends (two
    transactions, two round trips). No ORM: the peer pays nothing it needn't."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()

    def cursor(self):
        cur = getattr(self.local, "cursor", None)
        if cur is None:
            import psycopg2

            conn = psycopg2.connect(self.url)
            conn.autocommit = True
            cur = self.local.cursor = conn.cursor()
        return cur

    def started(self, task_id: str) -> int:
        cur = self.cursor()
        cur.execute("INSERT INTO collection_history (task_id, customer_id, provider, data_types,"
                    " status, started_at) VALUES (%s, %s, %s, %s, 'running', now() at time zone "
                    "'utc') RETURNING id", (task_id, "default_customer", "noop", "ping"))
        return cur.fetchone()[0]

    def ended(self, row_id: int, began: float) -> None:
        self.cursor().execute(
            "UPDATE collection_history SET status = 'success', finished_at = now() at time zone "
            "'utc', duration_ms = %s, records = 0 WHERE id = %s",
            (int((time.monotonic() - began) * 1000), row_id))


def create_history_table(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    conn.cursor().execute(HISTORY_TABLE)
    conn.close()


@cache
def celery_history_app():
    from celery import Celery

    app = Celery("bench_history", broker=redis_url(DBS["celery_history"]))
    app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False,
                    worker_redirect_stdouts=False, broker_connection_retry_on_startup=True)
    role = os.environ.get("BENCH_ROLE") == "celery_history"
    reporter = Reporter("celery_history") if role else None
    rows = HistoryRows(os.environ["DATABASE_URL"]) if role else None

    @app.task(name="bench.noop_history", bind=True)
    def noop_history(self, seq, mode):
        picked = time.monotonic()
        row_id = rows.started(self.request.id)
        started = time.monotonic()  # its work starts once its row is written, as ours does
        rows.ended(row_id, started)
        reporter.ended(seq, started, mode, picked)

    return app, noop_history


# --- ours: the product's collect_data_task with a no-op provider ---------------------------------

_local = threading.local()


class NoopCollector:
    """A provider that collects nothing: what is left is everything the product adds."""

    provider = "noop"
    data_types = ("ping", "burst")

    def __init__(self, settings, customer_id: str, account=None) -> None:
        self.customer_id = customer_id

    def collect(self, data_type, ctx):
        _local.started = (ctx.run_id, time.monotonic(), data_type,
                          getattr(_local, "picked", None))
        return iter(())

    def ping(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


class NullClient:
    """A ClickHouse client that answers nothing: a no-op collection writes nothing, and no
    ClickHouse server runs here. The product's MetricsStore runs on top of it unchanged."""

    class _Result:
        def __init__(self, rows: list) -> None:
            self.result_rows = rows

    def query(self, sql: str, *args, **kwargs):
        # An aggregate over nothing is one row of NULL (count() of nothing reads as none too).
        head = sql.split(" FROM ", 1)[0]
        return self._Result([(None,)] if "count()" in head or "max(" in head else [])

    def command(self, *args, **kwargs) -> None:
        pass

    def insert(self, *args, **kwargs) -> None:
        pass

    def create_insert_context(self, *args, **kwargs):
        return self._Context()

    def data_insert(self, context) -> None:
        pass

    class _Context:
        data: list = []

    def close(self) -> None:
        pass


def register_noop() -> None:
    from optiinfra_tui.providers import ProviderSpec, register

    # In this process only: the benchmark's workers are its own threads.
    register(ProviderSpec(name="noop", title="no-op", data_types=NoopCollector.data_types,
                          default_types=NoopCollector.data_types[:1], fields={},
                          collector=f"{__name__}:NoopCollector"))


def ours_runtime():
    """A Runtime whose metrics store is the null one (the producer and the workers use it)."""
    from optiinfra_tui.settings import load_settings
    from optiinfra_tui.storage.metrics import MetricsStore
    from optiinfra_tui.worker.runtime import Runtime

    store = MetricsStore(NullClient(), "bench", "no ClickHouse (bench)")

    class BenchRuntime(Runtime):
        def metrics(self):
            return store

    register_noop()
    return BenchRuntime(load_settings())


def run_ours() -> None:
    """What `optiinfra-tui --headless --workers 2` runs, with the no-op provider registered."""
    from huey.signals import SIGNAL_COMPLETE, SIGNAL_EXECUTING

    from optiinfra_tui.logs import setup_logging
    from optiinfra_tui.worker.pool import WorkerPool
    from optiinfra_tui.worker.runtime import set_runtime

    rt = ours_runtime()
    setup_logging(rt.settings)
    set_runtime(rt)
    rt.history()
    reporter = Reporter("ours")

    @rt.huey.signal(SIGNAL_EXECUTING)
    def on_executing(signal, task, *args):
        _local.picked = time.monotonic()

    @rt.huey.signal(SIGNAL_COMPLETE)
    def on_complete(signal, task, *args):
        info = getattr(_local, "started", None)
        if info is not None:
            _local.started = None
            reporter.ended(*info)

    pool = WorkerPool(rt, 2, "headless")
    pool.start()
    _serve_until_stdin_closes()
    pool.stop(10)


def run_slot() -> None:
    """bench/scale_customers.py --no-store: `--headless --workers $BENCH_WORKERS` with the null
    metrics store, so its RSS is the consumer's without the store's; ends on SIGTERM."""
    import signal

    from optiinfra_tui.logs import setup_logging
    from optiinfra_tui.worker.pool import WorkerPool
    from optiinfra_tui.worker.runtime import set_runtime
    from optiinfra_tui.worker.startup import prepare_process

    prepare_process()
    rt = ours_runtime()
    setup_logging(rt.settings)
    set_runtime(rt)
    rt.history()
    pool = WorkerPool(rt, int(os.environ["BENCH_WORKERS"]), "headless")
    pool.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    pool.stop(10)


def run_plain() -> None:
    import signal

    from huey.consumer import Consumer

    huey, _ = plain_huey()
    consumer = Consumer(huey, workers=2, worker_type="thread")
    consumer.start()
    # start() took over SIGTERM; the producer ends us by closing stdin instead.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _serve_until_stdin_closes()
    consumer.stop(graceful=True)


def run_celery(app=None) -> None:
    app = app or celery_app()[0]
    app.worker_main(["worker", "--pool=threads", "--concurrency=2", "--loglevel=WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])


def run_celery_history() -> None:
    run_celery(celery_history_app()[0])


def _serve_until_stdin_closes() -> None:
    try:
        while sys.stdin.read(1):
            pass
    except (KeyboardInterrupt, OSError):
        pass


def main() -> None:
    role = sys.argv[1]
    os.environ["BENCH_ROLE"] = role
    {"ours": run_ours, "plain": run_plain, "celery": run_celery,
     "celery_history": run_celery_history, "slot": run_slot}[role]()
