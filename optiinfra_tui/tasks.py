"""The Huey tasks, under the names of the old system.

Tasks carry ids (customer, provider, data types, run id), never a credential: the worker
resolves the key from its own environment.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from huey.exceptions import RetryTask

from optiinfra_tui import runs
from optiinfra_tui.collection import execute_run, request_collection
from optiinfra_tui.errors import BackendUnavailable, OptiInfraError
from optiinfra_tui.storage.history import UNAVAILABLE

log = logging.getLogger("optiinfra.tasks")

HISTORY_RETRY_DELAY = 5


def register_tasks(rt) -> SimpleNamespace:
    """Register the tasks on `rt.huey`; each task body runs against that runtime."""
    huey = rt.huey

    @huey.task(context=True, name="collect_data_task")
    def collect_data_task(customer_id, provider, data_types, run_id=None, trigger="api",
                          task=None):
        """Collect data types of one provider for one customer into ClickHouse."""
        try:
            rt.history()
            if run_id is None:  # enqueued by something that didn't record a run first
                run = runs.create_run(customer_id, provider, data_types, trigger,
                                      rt.settings.max_retries + 1)
                runs.attach_task(run.id, task.id)
                run_id = run.id
            outcome = execute_run(rt, run_id)
        except (UNAVAILABLE + (BackendUnavailable,)) as exc:
            # The history store is down before the attempt could be recorded: try later,
            # rather than run something nobody can see.
            log.warning("history unavailable (%s); task %s retries in %d s",
                        type(exc).__name__, task.id, HISTORY_RETRY_DELAY)
            raise RetryTask(delay=HISTORY_RETRY_DELAY) from None
        if outcome.retry_in is not None:
            # Huey's own retry budget never runs out on RetryTask: attempts are counted
            # on the run, which is why retries=0 here.
            raise RetryTask(delay=outcome.retry_in)
        return None

    @huey.task(name="scheduled_collection_task")
    def scheduled_collection_task(provider, data_types, schedule=None):
        """Fan out one collection per configured customer of `provider`."""
        run_ids = []
        for customer in rt.settings.customers:
            if provider not in customer.credential_vars:
                continue
            try:
                run = request_collection(rt, customer.id, provider, data_types,
                                         trigger="schedule", schedule=schedule)
                run_ids.append(run.id)
            except OptiInfraError as exc:
                log.warning("schedule %s: could not queue %s for %s: %s", schedule, provider,
                            customer.id, exc)
        return run_ids

    @huey.task(name="health_check_task")
    def health_check_task():
        """Check every backend and provider; the results go to the history store."""
        from optiinfra_tui.health import check_all, record

        results = check_all(rt, providers=True)
        record(results)
        return [r.__dict__ for r in results]

    return SimpleNamespace(collect_data_task=collect_data_task,
                           scheduled_collection_task=scheduled_collection_task,
                           health_check_task=health_check_task)
