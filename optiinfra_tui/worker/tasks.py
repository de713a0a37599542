"""The Huey tasks, under the names of the old system.

Tasks carry ids (customer, provider, data types, run id), never a credential: the worker
resolves the key from its own environment.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING

from huey.exceptions import RetryTask

from optiinfra_tui.errors import BackendUnavailable
from optiinfra_tui.storage.history import UNAVAILABLE
from optiinfra_tui.worker import runs
from optiinfra_tui.worker.collection import execute_run, fan_out

if TYPE_CHECKING:  # runtime imports this module's callers: annotations only
    from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.tasks")

HISTORY_RETRY_DELAY = 5
HAND_BACK_DELAY = 2


def _hand_back(rt: Runtime, task) -> None:
    """Give a task back to the queue for the process that owns the data dir to run.

    Nothing is recorded: the attempt never started here, so it costs the run no retry.
    """
    from optiinfra_tui.worker.owner import embedded_owner

    holder = embedded_owner(rt.settings.home)
    log.warning("task %s handed back: the data dir %s belongs to %s", task.id,
                rt.settings.home, holder.describe() if holder else "another process")
    raise RetryTask(delay=HAND_BACK_DELAY)


def register_tasks(rt: Runtime) -> SimpleNamespace:
    """Register the tasks on `rt.huey`; each task body runs against that runtime."""
    huey = rt.huey

    @huey.task(context=True, name="collect_data_task")
    def collect_data_task(customer_id, provider, data_types, run_id=None, trigger="api",
                          task=None):
        """Collect data types of one provider for one customer into ClickHouse."""
        if not rt.may_collect():
            _hand_back(rt, task)
        try:
            rt.history()
            if run_id is None:  # enqueued by something that didn't record a run first
                run = runs.create_run(customer_id, provider, data_types, trigger,
                                      rt.settings.max_retries + 1)
                runs.attach_task(run.id, task.id)
                run_id = run.id
            # The run's end rides with this process's next history batch: nothing reads it
            # here, and the thread's next claim commits it at the latest.
            outcome = execute_run(rt, run_id, wait=False)
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
        """Fan out one collection per customer with a credential for `provider` here."""
        return [run.id for run in fan_out(rt, provider, data_types, trigger="schedule",
                                          schedule=schedule).runs]

    @huey.task(context=True, name="health_check_task")
    def health_check_task(task=None):
        """Check every backend and provider; the results go to the history store."""
        from optiinfra_tui.worker.health import check_all, record

        if not rt.may_collect():
            _hand_back(rt, task)

        results = check_all(rt, providers=True)
        record(results)
        return [r.__dict__ for r in results]

    return SimpleNamespace(collect_data_task=collect_data_task,
                           scheduled_collection_task=scheduled_collection_task,
                           health_check_task=health_check_task)
