"""The Huey instance, and a consumer that can live inside another program.

Huey's Consumer takes over SIGINT/SIGTERM/SIGHUP in start() and relies on run()'s loop for
health checks. EmbeddedConsumer leaves signals to its host, checks worker health on its
own timer, and wakes idle workers the moment a task is enqueued in this process.
"""

from __future__ import annotations

import logging
import threading
import time

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer, Worker
from huey.signals import SIGNAL_ENQUEUED
from huey.storage import RedisStorage

from optiinfra_tui.datadir import create_file, make_dir
from optiinfra_tui.settings import Settings

log = logging.getLogger("optiinfra.queue")

QUEUE_NAME = "optiinfra"


class _HistoryRevokes:
    """Runs are revoked in the history (`cancel_run`), which every attempt's claim checks;
    Huey's own revocation is never used, and checking for it costs each task two round trips
    to the queue (a read before it runs, a delete after)."""

    def is_revoked(self, task, timestamp=None, peek=True) -> bool:
        return False

    def delete(self, key):
        if isinstance(key, str) and key.startswith("r:"):  # a task's revoke flag: never set
            return False
        return super().delete(key)


class QueueRedisHuey(_HistoryRevokes, RedisHuey):
    pass


class QueueSqliteHuey(_HistoryRevokes, SqliteHuey):
    pass


def build_huey(settings: Settings) -> Huey:
    """RedisHuey when Redis is configured, else SqliteHuey in the data dir."""
    # results=False: the history store records outcomes, and an unread result store only grows.
    if settings.redis_url:
        import redis

        # Timeouts so a dead Redis fails a call in seconds instead of hanging a worker.
        pool = redis.ConnectionPool.from_url(settings.redis_url, health_check_interval=10,
                                             socket_timeout=5, socket_connect_timeout=5)
        return QueueRedisHuey(QUEUE_NAME, connection_pool=pool, results=False, utc=True)
    make_dir(settings.home)
    create_file(settings.home / "queue.db")
    return QueueSqliteHuey(QUEUE_NAME, filename=str(settings.home / "queue.db"), results=False,
                           utc=True, timeout=10)


def enqueue_many(huey: Huey, tasks: list) -> None:
    """Enqueue `tasks` at once: on Redis one round trip, all or none (MULTI/EXEC); elsewhere
    one by one. What Huey.enqueue does for a plain task, for many."""
    for task in tasks:
        huey._emit(SIGNAL_ENQUEUED, task)  # as Huey.enqueue does: wakes in-process workers
    storage = huey.storage
    if type(storage) is not RedisStorage:  # SQLite, or Redis with priorities
        for task in tasks:
            storage.enqueue(huey.serialize_task(task), task.priority)
        return
    pipe = storage.conn.pipeline(transaction=True)
    for task in tasks:
        pipe.lpush(storage.queue_key, huey.serialize_task(task))
    pipe.execute()


def queue_ping(huey: Huey) -> float:
    """Seconds for one round trip to the queue's storage; raises when it is unreachable."""
    start = time.perf_counter()
    storage = huey.storage
    if isinstance(storage, RedisStorage):
        storage.conn.ping()
    else:
        storage.queue_size()
    return time.perf_counter() - start


class WakeableWorker(Worker):
    """A worker whose idle back-off ends as soon as the host enqueues something."""

    wake_event: threading.Event

    def sleep(self) -> None:
        delay = min(self.delay, self.max_delay)
        if self.wake_event.wait(delay):
            self.wake_event.clear()
            self.delay = self.default_delay
        else:
            self.delay *= self.backoff


class EmbeddedConsumer(Consumer):
    """A Huey consumer for threads inside a host program (dashboard, headless, tests)."""

    worker_class = WakeableWorker

    def __init__(self, huey: Huey, workers: int = 2, health_check_interval: float = 5.0,
                 **options) -> None:
        self.wake_event = threading.Event()
        options.setdefault("max_delay", 1.0)
        super().__init__(huey, workers=workers, worker_type="thread",
                         check_worker_health=True,
                         health_check_interval=health_check_interval, **options)
        self._health_timer: threading.Thread | None = None
        self._wake_receiver = self._on_enqueue
        huey.signal("enqueued")(self._wake_receiver)

    def _create_worker(self) -> Worker:
        worker = super()._create_worker()
        worker.wake_event = self.wake_event
        return worker

    def _set_signal_handlers(self) -> None:
        """Signals belong to the host program."""

    def _on_enqueue(self, signal, task, *args) -> None:
        self.wake_event.set()

    def wake(self) -> None:
        self.wake_event.set()

    def start(self) -> None:
        super().start()
        self._health_timer = threading.Thread(target=self._health_loop, name="HealthCheck",
                                              daemon=True)
        self._health_timer.start()

    def _health_loop(self) -> None:
        while not self.stop_flag.wait(self._health_check_interval):
            try:
                self.check_worker_health()
            except Exception:  # never let the watchdog itself die
                log.exception("worker health check failed")

    def stop(self, graceful: bool = True, timeout: float | None = None) -> bool:
        """Stop taking tasks; with graceful, wait up to `timeout` for tasks in flight.

        Returns True when every worker has stopped.
        """
        self.shutdown_timeout = timeout
        self.huey.disconnect_signal(self._wake_receiver)
        self.stop_flag.set()
        # Workers blocked in their back-off wait on wake_event: release them.
        for _ in self.worker_threads:
            self.wake_event.set()
        if not graceful:
            return False
        done = self._join_workers()
        self.huey.notify_interrupted_tasks()
        return done
