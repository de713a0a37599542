"""Requesting a collection and executing one attempt of it: the code every trigger shares.

A task, `collect --inline` and a retry all end in `execute_run`; the error kind decides
what happens next (TransientError retries, everything else fails at once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from optiinfra_tui.collectors import get_collector
from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.errors import (
    RETRYABLE,
    BackendUnavailable,
    OptiInfraError,
    TransientError,
    backoff,
    error_kind,
)
from optiinfra_tui.rows import COST_LINES
from optiinfra_tui.settings import validate_customer_id, validate_data_types
from optiinfra_tui.storage.history import CANCELED, CollectionRun, utcnow
from optiinfra_tui.text import scrub
from optiinfra_tui.worker import runs, telemetry
from optiinfra_tui.worker.health import NO_CREDENTIALS, record_collection
from optiinfra_tui.worker.queue import enqueue_many

if TYPE_CHECKING:  # runtime imports this module's callers: annotations only
    from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.collection")

MAX_RETRY_DELAY = 3600.0

Progress = Callable[[int, int], None]  # (rows written, pages read) so far in this attempt


@dataclass(frozen=True)
class Outcome:
    status: str  # success | failed | retrying | canceled | skipped
    rows: int = 0
    retry_in: float | None = None
    error_kind: str | None = None
    message: str | None = None


def retry_delay(attempt: int, base: float, retry_after: float | None = None) -> float:
    """The wait before the retry after `attempt` (1-based); at least what the server asked."""
    delay = backoff(attempt - 1, base, MAX_RETRY_DELAY)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_DELAY))
    return delay


def request_collection(rt: Runtime, customer_id: str, provider: str,
                       data_types: str | Iterable[str] | None, trigger: str,
                       retry_of: int | None = None,
                       schedule: str | None = None) -> CollectionRun:
    """Validate, record the run as queued, then enqueue its task.

    If the queue can't take the task, the run is removed again and BackendUnavailable
    raised: nothing half-done is left behind.
    """
    settings = rt.settings
    validate_customer_id(customer_id)
    settings.customer(customer_id)
    types = validate_data_types(provider, data_types if data_types is None or isinstance(
        data_types, str) else list(data_types))
    rt.history()
    # The task exists first so that its id goes into the run's one INSERT; the run's id then
    # goes into the task's arguments, before anything is enqueued.
    task = rt.tasks.collect_data_task.s(customer_id, provider, list(types), run_id=None,
                                        trigger=trigger)
    run = runs.create_run(customer_id, provider, types, trigger,
                          max_attempts=settings.max_retries + 1, retry_of=retry_of,
                          schedule=schedule, task_id=task.id)
    task.kwargs["run_id"] = run.id
    try:
        rt.huey.enqueue(task)
    except Exception as exc:
        runs.delete_run(run.id)
        where, fix = settings.queue_location()
        raise BackendUnavailable(
            f"The queue is unreachable: {where} ({type(exc).__name__}); nothing was queued. {fix}"
        ) from None
    return run


@dataclass
class FanOut:
    """What a fan-out queued, and whom it skipped."""

    runs: list[CollectionRun] = field(default_factory=list)
    no_credentials: list[tuple[str, str]] = field(default_factory=list)  # customer, var to set
    errors: list[OptiInfraError] = field(default_factory=list)


def fan_out(rt: Runtime, provider: str, data_types: Iterable[str], trigger: str,
            schedule: str | None = None, into: FanOut | None = None) -> FanOut:
    """Queue a collection of `provider` for every customer whose credential for it is set in
    this process's environment (a scheduled fan-out runs in a worker: the worker's).

    Customers without it are skipped, not failed: a newcomer without a key gets no failed
    run per slot. Runs are recorded and enqueued FAN_OUT_CHUNK at a time (one INSERT, one
    queue round trip each); a chunk the queue refused doesn't stop the others.
    """
    out = into or FanOut()
    ready = []
    for customer in rt.settings.customers_with(provider):
        missing = rt.settings.missing_credential(customer.id, provider)
        if missing:
            out.no_credentials.append((customer.id, missing))
            log.info("%s: %s skipped for %s: no credentials (set %s)", schedule or trigger,
                     provider, customer.id, missing)
            continue
        ready.append(customer.id)
    for start in range(0, len(ready), FAN_OUT_CHUNK):
        chunk = ready[start:start + FAN_OUT_CHUNK]
        try:
            out.runs += request_many(rt, chunk, provider, data_types, trigger, schedule)
        except OptiInfraError as exc:
            who = chunk[0] if len(chunk) == 1 else f"{len(chunk)} customers ({chunk[0]}…{chunk[-1]})"
            log.warning("%s: could not queue %s for %s: %s", schedule or trigger, provider,
                        who, exc)
            out.errors.append(exc)
    return out


# Runs a fan-out records and enqueues at once: one INSERT and one queue round trip each.
FAN_OUT_CHUNK = 500


def request_many(rt: Runtime, customer_ids: list[str], provider: str,
                 data_types: Iterable[str], trigger: str,
                 schedule: str | None = None) -> list[CollectionRun]:
    """request_collection for many customers at once: every run recorded as queued (one
    INSERT), then every task enqueued (one round trip on Redis); if the queue refuses them,
    the runs are removed again and BackendUnavailable raised."""
    settings = rt.settings
    types = validate_data_types(provider, list(data_types))
    for customer_id in customer_ids:
        settings.customer(customer_id)
    rt.history()
    tasks = [rt.tasks.collect_data_task.s(c, provider, list(types), run_id=None, trigger=trigger)
             for c in customer_ids]
    made = runs.create_runs(customer_ids, provider, types, trigger, settings.max_retries + 1,
                            [t.id for t in tasks], schedule=schedule)
    for task, run in zip(tasks, made, strict=True):
        task.kwargs["run_id"] = run.id
    try:
        enqueue_many(rt.huey, tasks)
    except Exception as exc:
        runs.delete_runs([run.id for run in made])
        where, fix = settings.queue_location()
        raise BackendUnavailable(
            f"The queue is unreachable: {where} ({type(exc).__name__}); nothing was queued. {fix}"
        ) from None
    return made


def worker_name(rt: Runtime) -> str:
    return f"{rt.consumer_id}:{threading.current_thread().name}"


def execute_run(rt: Runtime, run_id: int, on_progress: Progress | None = None,
                wait: bool = True) -> Outcome:
    """Run one attempt of a run, recording its start and end; never raises for a run's failure.

    `on_progress(rows, pages)` is called after each page the collector yields. Without
    `wait`, a final end is committed with the process's next batch of history writes
    instead of before returning (a worker task: its thread takes the next task meanwhile)."""
    rt.history()
    run = runs.start_attempt(run_id, worker_name(rt))
    if run is None:
        return Outcome("skipped")
    rt.activity.began(run.id, f"{run.provider}/{run.customer_id} {run.data_types}")
    written = [0]
    outcome = Outcome("failed")
    began = time.monotonic()
    try:
        _collect(rt, run, written, on_progress)
        # The check first: whoever sees the run final sees the header agree with it.
        _provider_checked(run, True, f"collected {written[0]} rows (run {run.id})")
        runs.finish_success(run, written[0], wait=wait)
        outcome = Outcome("success", rows=written[0])
        log.info("run %d: %s for %s collected %d rows (attempt %d)", run.id, run.provider,
                 run.customer_id, written[0], run.attempt)
    except KeyboardInterrupt:
        runs.finish_failure(run, "interrupted",
                            "Interrupted (Ctrl-C or shutdown) during the collection. Rows "
                            "already written are kept and won't be duplicated: run it again.",
                            written[0], status=CANCELED)
        outcome = Outcome("canceled", rows=written[0], error_kind="interrupted")
        raise
    except Exception as exc:
        outcome = _record_failure(rt, run, exc, written[0], wait)
    finally:
        rt.activity.ended(outcome.status in ("success", "retrying"))
        telemetry.record_run(run.provider, outcome.status, time.monotonic() - began)
    return outcome


PROVIDER_SIDE = "optiinfra_provider_side"


def _provider_checked(run: CollectionRun, ok: bool, message: str) -> None:
    """A run's outcome is a check of its provider for its customer (see health.py)."""
    try:
        record_collection(run.provider, run.customer_id, ok, message)
    except Exception as exc:  # the run's own record matters more than this
        log.warning("run %d: could not record the provider check: %s", run.id, exc)


def _from_provider(batches: Iterable) -> Iterator:
    """The collector's batches; a failure raised while making them is tagged as the
    provider's (its API, its credential), unlike the store's failures while writing them."""
    try:
        yield from batches
    except Exception as exc:
        setattr(exc, PROVIDER_SIDE, True)
        raise


def _collect(rt: Runtime, run: CollectionRun, written: list[int],
             on_progress: Progress | None = None) -> None:
    settings = rt.settings
    try:
        collector = get_collector(run.provider, settings, run.customer_id)  # ConfigError: no key
    except Exception as exc:
        setattr(exc, PROVIDER_SIDE, True)
        raise
    deadline = time.monotonic() + settings.task_time_limit
    pages = 0
    try:
        store = rt.metrics()
        for data_type in run.types:
            # Two queries, made only for a collector that reads them (a plug-in may not say).
            known, latest = (store.invoice_state(run.customer_id, run.provider)
                             if data_type == "cost" and getattr(collector, "skips_known_invoices",
                                                                False)
                             else (frozenset(), None))
            ctx = CollectContext(customer_id=run.customer_id, run_id=run.id,
                                 collected_at=utcnow(), known_invoice_ids=known,
                                 latest_invoice_id=latest,
                                 state=_StoredState(store, run.customer_id, run.provider))
            with store.buffered() as writer:
                # Rows reach ClickHouse in inserts of thousands (a chDB insert costs ~10 ms
                # however small); an invoice counts as complete only once its rows are flushed.
                invoices = _InvoiceTracker(store, writer, run)
                try:
                    for batch in _from_provider(collector.collect(data_type, ctx)):
                        written[0] += writer.write(batch, customer_id=run.customer_id,
                                                   provider=run.provider,
                                                   collected_at=ctx.collected_at)
                        if batch.table == COST_LINES:
                            invoices.saw(batch.rows)
                        pages += 1
                        if on_progress:
                            on_progress(written[0], pages)
                        if time.monotonic() > deadline:
                            raise TransientError(
                                f"The collection ran past TASK_TIME_LIMIT ({settings.task_time_limit} s);"
                                " the next attempt continues from what was written.")
                except BaseException:
                    invoices.finish(last_complete=False)
                    raise
                invoices.finish(last_complete=True)
    finally:
        collector.close()
        requests = getattr(collector, "requests", 0)  # collectors that count them
        if requests:
            try:
                runs.add_requests(run.id, requests)
            except Exception:  # keep the run's own outcome; the count is only lost
                log.warning("could not record run %d's %d requests", run.id, requests)


class _StoredState(Mapping[str, str]):
    """A collector's remembered state (Window.state), read from the store when the collector
    first looks: most collectors never do, and each read is a FINAL query on a hot path."""

    def __init__(self, store, customer_id: str, provider: str) -> None:
        self._read = lambda: store.collector_state(customer_id, provider)
        self._state: dict[str, str] | None = None

    def _loaded(self) -> dict[str, str]:
        if self._state is None:
            self._state = self._read()
        return self._state

    def __getitem__(self, key: str) -> str:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


class _InvoiceTracker:
    """Marks invoices complete once all their lines are stored, so the next run skips them.

    An invoice's lines arrive together; when another invoice's lines start (or the walk
    ends), the previous invoice is complete. One cut short stays unknown and is re-read.
    Invoices are marked in hundreds as the writer's inserts store their lines (no flush is
    forced for it), and all at the end after a flush.
    """

    def __init__(self, store, writer, run: CollectionRun) -> None:
        self.store, self.writer, self.run = store, writer, run
        # Complete invoices, each with the writer's position its lines end by, in order.
        self.done: list[tuple[str, int]] = []
        self.current: str | None = None

    def saw(self, rows: list) -> None:
        """Call after writing `rows`."""
        end = self.writer.position  # this batch included: an invoice's lines end by it
        for row in rows:
            if row.invoice_id != self.current:
                if self.current is not None:
                    self.done.append((self.current, end))
                self.current = row.invoice_id
        if len(self.done) >= 100:
            stored = self.writer.stored
            ready = 0
            while ready < len(self.done) and self.done[ready][1] <= stored:
                ready += 1
            if ready >= 100:
                self._mark(ready)

    def finish(self, last_complete: bool) -> None:
        if last_complete and self.current is not None:
            self.done.append((self.current, self.writer.position))
            self.current = None
        try:
            if self.done:
                self.writer.flush()  # raises if any of their lines could not be stored
                self._mark(len(self.done))
        except Exception:  # keep the original error; the invoices are simply re-read
            log.warning("could not record completed invoices for run %d", self.run.id)

    def _mark(self, count: int) -> None:
        self.store.mark_invoices_complete(self.run.customer_id, self.run.provider,
                                          [invoice for invoice, _ in self.done[:count]])
        del self.done[:count]


def _record_failure(rt: Runtime, run: CollectionRun, exc: Exception, rows: int,
                    wait: bool = True) -> Outcome:
    settings = rt.settings
    kind = error_kind(exc)
    message = scrub(str(exc) or type(exc).__name__, settings.secrets())
    if kind == "internal":
        log.error("run %d: internal error", run.id, exc_info=exc)
        message = (f"Internal error ({type(exc).__name__}: {message}). This is a bug; details "
                   f"are in {settings.log_path}.")
    if kind != "internal" and getattr(exc, PROVIDER_SIDE, False):  # not the store's, nor a bug
        missing = settings.missing_credential(run.customer_id, run.provider)
        # Worded as the timed check words it, so the header says one thing for one cause.
        _provider_checked(run, False, f"{NO_CREDENTIALS}: set {missing}" if missing
                          and kind == "config" else message)
    if isinstance(exc, RETRYABLE) and run.attempt < run.max_attempts:
        delay = retry_delay(run.attempt, settings.retry_delay, getattr(exc, "retry_after", None))
        runs.schedule_retry(run, kind, message, delay, rows)
        log.warning("run %d: attempt %d/%d failed (%s), retrying in %.1f s: %s", run.id,
                    run.attempt, run.max_attempts, kind, delay, message)
        return Outcome("retrying", rows=rows, retry_in=delay, error_kind=kind, message=message)
    if isinstance(exc, RETRYABLE):
        tries = "1 attempt" if run.attempt == 1 else f"{run.attempt} attempts"
        message = f"{message.rstrip()} Gave up after {tries} (MAX_RETRIES={settings.max_retries})."
    runs.finish_failure(run, kind, message, rows, wait=wait)
    log.warning("run %d: failed (%s): %s", run.id, kind, message)
    return Outcome("failed", rows=rows, error_kind=kind, message=message)


def run_inline(rt: Runtime, run_id: int, on_retry: Callable[[Outcome], None] | None = None,
               on_progress: Progress | None = None) -> CollectionRun:
    """Run every attempt of a run in this process, sleeping between retries."""
    while True:
        outcome = execute_run(rt, run_id, on_progress)
        if outcome.status != "retrying":
            return runs.get_run(run_id)
        if on_retry:
            on_retry(outcome)
        time.sleep(outcome.retry_in or 0)

