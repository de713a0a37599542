"""The per-process companion of a consumer: heartbeat, schedule ticks, backend health.

Every kind of consumer (dashboard, headless, plain `huey_consumer`) runs one agent, so each
shows up in `status` and each can claim schedule slots.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from optiinfra_tui.logs import protect_existing_handlers, queue_outage
from optiinfra_tui.storage.history import (
    HEARTBEAT_STALE_AFTER,
    WorkerHeartbeat,
    close_connection,
    flush_writes,
    utcnow,
)
from optiinfra_tui.text import short_error
from optiinfra_tui.worker import recovery, runs, schedules, webhooks
from optiinfra_tui.worker.alerts import AlertWatcher
from optiinfra_tui.worker.health import BACKEND_EVERY, check_all, record, recorded
from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.agent")

HEARTBEAT_EVERY = 3.0
TICK_EVERY = 1.0
HEALTH_EVERY = BACKEND_EVERY
RECOVER_EVERY = 5.0
# The claim, one per period, that makes one consumer of all check the provider APIs.
PROVIDER_CHECK = "__provider_health__"

class ConsumerAgent:
    def __init__(self, rt: Runtime, kind: str, threads: int, run_schedules: bool = True,
                 metrics_health: bool = True,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.rt = rt
        self.clock = clock  # decides which schedule slots are due: tests bring their own
        self.kind = kind
        self.threads = threads
        self.run_schedules = run_schedules
        self.metrics_health = metrics_health
        self.started_at = utcnow()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._settled: set = set()  # schedule slots already claimed or lost by this consumer
        self._prune_hour = None
        self._next_beat = 0.0
        self._providers: threading.Thread | None = None
        self._alerts: AlertWatcher | None = None
        # Since when every loop has succeeded (the history store reachable); see _may_recover.
        self._reachable_since = time.monotonic()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="Agent", daemon=True)
        self._thread.start()
        if self.run_schedules and self.rt.settings.alerts:
            # Its own thread: a slow webhook must not delay the heartbeat or a schedule tick.
            # A missing URL variable raises here (entry points check it before starting).
            self._alerts = AlertWatcher(self.rt, self.rt.settings.alert_urls(),
                                        self.clock).start()

    def stop(self) -> None:
        self._stop.set()
        if self._alerts is not None:
            self._alerts.stop()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            WorkerHeartbeat.delete().where(
                WorkerHeartbeat.consumer_id == self.rt.consumer_id).execute()
        except Exception:
            pass

    def _loop(self) -> None:
        next_tick = next_health = next_recover = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self.rt.history()
                if now >= self._next_beat:
                    self.beat()
                if self.run_schedules and now >= next_tick:
                    self.tick()
                    next_tick = now + TICK_EVERY
                if now >= next_health:
                    self.check_health()
                    next_health = now + HEALTH_EVERY
                if self.run_schedules and self.rt.settings.provider_check_interval:
                    self.check_providers()
                if self.run_schedules and now >= next_recover and self._may_recover(now):
                    recovery.recover(self.rt)
                    recovery.requeue_lost(self.rt)
                    self.maybe_prune()
                    next_recover = now + RECOVER_EVERY
                self._recovered()
            except Exception as exc:
                self._failed(exc)
            self._stop.wait(0.5)

    def _failed(self, exc: Exception) -> None:
        # One line per change of state, not one per loop: a down database is news once.
        text = short_error(exc, 300)
        self._reachable_since = time.monotonic()
        if text != self._last_error:
            log.warning("consumer agent: a backend is unavailable (%s); retrying", text)
            self._last_error = text

    def _recovered(self) -> None:
        if self._last_error is not None:
            log.info("consumer agent: backends reachable again")
            self._last_error = None

    def _may_recover(self, now: float) -> bool:
        # After an outage every consumer's heartbeat is stale: give the live ones time to
        # beat again, or their running tasks would look orphaned and run twice.
        return now - self._reachable_since >= HEARTBEAT_STALE_AFTER.total_seconds()

    def beat(self) -> None:
        self._next_beat = time.monotonic() + HEARTBEAT_EVERY
        processed, failed = self.rt.activity.totals()
        state = json.dumps([t.to_json() for t in self.rt.activity.snapshot()])
        values = dict(host=self.rt.host, pid=os.getpid(), kind=self.kind,
                      threads=self.threads, processed=processed, failed=failed,
                      started_at=self.started_at, beat_at=utcnow(), state=state)
        (WorkerHeartbeat.insert(consumer_id=self.rt.consumer_id, **values)
         .on_conflict(conflict_target=[WorkerHeartbeat.consumer_id],
                      update={getattr(WorkerHeartbeat, k): v for k, v in values.items()})
         .execute())

    def _beat_if_due(self) -> None:
        # A long prune runs in this thread: the heartbeat must go on, or this consumer's
        # running tasks would look orphaned to the others.
        if time.monotonic() >= self._next_beat:
            self.beat()

    def tick(self) -> None:
        for schedule, slot in schedules.due(self.rt.settings.schedules, self.clock(),
                                            self.rt.consumer_id, self._settled):
            try:
                self.rt.tasks.scheduled_collection_task(schedule.provider,
                                                        list(schedule.data_types),
                                                        schedule=schedule.name)
            except Exception:
                # The queue didn't take it: give the slot back, so that a later tick (here
                # or on another consumer) runs it once the queue returns.
                schedules.unclaim(schedule.name, slot)
                self._settled.discard((schedule.name, slot))
                raise
            log.info("schedule %s: slot %s claimed, queued %s %s", schedule.name,
                     slot.isoformat(), schedule.provider, ",".join(schedule.data_types))

    def maybe_prune(self) -> None:
        now = self.clock()
        hour = now.replace(minute=0, second=0, microsecond=0)
        if hour == self._prune_hour:
            return
        self._prune_hour = hour
        if schedules.claim("__prune__", hour, self.rt.consumer_id):
            schedules.forget(PROVIDER_CHECK, now - timedelta(hours=1))
            webhooks.prune(now - timedelta(days=self.rt.settings.keep_days))
            deleted = runs.prune(self.rt.settings.keep_days, now, between=self._beat_if_due)
            if deleted:
                log.info("pruned %d runs older than %d days", deleted, self.rt.settings.keep_days)

    def check_health(self) -> None:
        results = check_all(self.rt, providers=False, metrics=self.metrics_health)
        if any(r.name == "queue" and r.ok for r in results):
            queue_outage.recovered()
        record(results)

    def check_providers(self, now: datetime | None = None) -> threading.Thread | None:
        """Once per PROVIDER_CHECK_INTERVAL across all consumers, check each provider API in
        a thread of its own (a slow API must not hold up the heartbeat). Returns that thread,
        if one started."""
        if self._providers is not None and self._providers.is_alive():
            return None
        now = now or self.clock()
        every = self.rt.settings.provider_check_interval
        slot = schedules.epoch_slot(every, now)
        if (PROVIDER_CHECK, slot) in self._settled:
            return None
        self._settled -= {k for k in self._settled if k[0] == PROVIDER_CHECK}
        self._settled.add((PROVIDER_CHECK, slot))
        if not schedules.claim(PROVIDER_CHECK, slot, self.rt.consumer_id):
            return None
        # A collection that ended in this period was a check already: no API call for it.
        fresh = frozenset(h.name for h in recorded(now)
                          if h.checked_at is not None and h.checked_at >= slot)
        self._providers = threading.Thread(target=self._check_providers, args=(fresh,),
                                           name="ProviderHealth", daemon=True)
        self._providers.start()
        return self._providers

    def _check_providers(self, fresh: frozenset[str]) -> None:
        try:
            self.rt.history()
            record(check_all(self.rt, providers=True, backends=False, skip=fresh))
        except Exception as exc:
            log.warning("provider health check failed: %s", exc)
        finally:
            close_connection()


_plain_agent: ConsumerAgent | None = None
_plain_lock = threading.Lock()


def attach_to_plain_consumer(rt: Runtime) -> None:
    """Start an agent from Huey's startup hook, for `huey_consumer huey_config.huey`.

    The hook runs once in each worker thread; the first starts the agent, each registers
    its thread so the heartbeat lists it.
    """

    @rt.huey.on_startup("optiinfra_agent")
    def _startup() -> None:
        global _plain_agent
        rt.activity.register()
        with _plain_lock:
            if _plain_agent is None:
                protect_existing_handlers(rt.settings)
                _plain_agent = ConsumerAgent(rt, "huey_consumer", threads=0)
                _plain_agent.start()
            _plain_agent.threads += 1

    @rt.huey.on_shutdown("optiinfra_agent")
    def _shutdown() -> None:
        global _plain_agent
        with _plain_lock:
            if _plain_agent is not None:
                _plain_agent.threads -= 1
                if _plain_agent.threads <= 0:
                    flush_writes(10)  # the last tasks' ends, before the heartbeat goes
                    _plain_agent.stop()
                    _plain_agent = None
