"""What a user can do to the system, one function each: what the dashboard's keys call.

Each returns something to show, or raises an OptiInfraError whose message says why not.
"""

from __future__ import annotations

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.storage.history import FAILED, QUEUED, RETRYING, CollectionRun
from optiinfra_tui.worker import runs, schedules
from optiinfra_tui.worker.collection import FanOut, fan_out, request_collection
from optiinfra_tui.worker.runtime import Runtime


def collect(rt: Runtime, provider: str, customer_id: str | None = None,
            data_types: str | list[str] | None = None, trigger: str = "manual") -> CollectionRun:
    """Queue one collection (defaults: the default customer, the provider's default types)."""
    return request_collection(rt, customer_id or rt.settings.default_customer_id, provider,
                              data_types, trigger=trigger)


def collect_everything(rt: Runtime) -> FanOut:
    """Queue every configured schedule's collection, now, for every customer with credentials.

    Raises the queue's error when it took nothing.
    """
    out = FanOut()
    for schedule in rt.settings.schedules:
        fan_out(rt, schedule.provider, schedule.data_types, trigger="manual",
                schedule=schedule.name, into=out)
    if out.errors and not out.runs:
        raise out.errors[0]
    return out


def can_retry(run: CollectionRun | None) -> bool:
    return run is not None and run.status in (FAILED, "canceled")


def retry(rt: Runtime, run_id: int) -> CollectionRun:
    """A new run for a failed one, linked to it by `retry_of`."""
    rt.history()
    run = runs.get_run(run_id)
    if not can_retry(run):
        raise ConfigError(f"Run {run_id} is {run.status if run else 'gone'}; only failed or "
                          "canceled runs can be retried.")
    return request_collection(rt, run.customer_id, run.provider, list(run.types),
                              trigger="retry", retry_of=run.id, schedule=run.schedule)


def can_revoke(run: CollectionRun | None) -> bool:
    return run is not None and run.status in (QUEUED, RETRYING)


def revoke(rt: Runtime, run_id: int) -> CollectionRun:
    """Cancel a queued (or retry-waiting) run; its task is skipped when a worker reaches it
    (the attempt's claim finds it canceled)."""
    rt.history()
    run = runs.get_run(run_id)
    if not can_revoke(run) or not runs.cancel_run(run_id):
        raise ConfigError(f"Run {run_id} is {run.status if run else 'gone'}; only queued or "
                          "retrying runs can be revoked.")
    return runs.get_run(run_id)


def toggle_schedules(rt: Runtime) -> bool:
    """Pause every schedule, or resume them all if any is paused; returns the new paused state."""
    rt.history()
    names = [s.name for s in rt.settings.schedules]
    paused = not schedules.paused_schedules() & set(names)
    schedules.set_paused(names, paused)
    return paused


def health_check(rt: Runtime) -> str:
    """Queue a health check of every backend and provider; returns its task id."""
    task = rt.tasks.health_check_task.s()
    rt.huey.enqueue(task)
    return task.id
