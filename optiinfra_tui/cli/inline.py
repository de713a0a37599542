"""`collect --inline`: the run in this process, with a progress line on a terminal."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from optiinfra_tui.storage.history import CollectionRun
    from optiinfra_tui.worker.runtime import Runtime


class Interrupted(Exception):
    """Ctrl-C during an inline run: the run is marked and the command exits 130."""


def collect_inline(rt: Runtime, provider: str, customer_id: str, types: tuple[str, ...],
                   customer_given: bool, data_types: str | None, quiet: bool) -> CollectionRun:
    """Record a run and run it here, through the workers' task code; the finished run."""
    from optiinfra_tui.settings import validate_customer_id
    from optiinfra_tui.storage.embedded import require_embedded
    from optiinfra_tui.worker import runs
    from optiinfra_tui.worker.agent import ConsumerAgent
    from optiinfra_tui.worker.collection import run_inline

    validate_customer_id(customer_id)
    rt.settings.customer(customer_id)
    require_embedded(rt.settings.clickhouse_url)  # before a run is recorded that can't succeed
    _open_store(rt, provider, customer_id if customer_given else None, data_types)
    rt.history()
    run = runs.create_run(customer_id, provider, types, "cli",
                          max_attempts=rt.settings.max_retries + 1)
    if not quiet:
        click.echo(f"run {run.id} started inline")
    progress = ProgressLine() if not quiet and sys.stderr.isatty() else None

    def on_retry(outcome) -> None:
        if progress:
            progress.clear()
        if not quiet:
            click.echo(f"  attempt failed ({outcome.error_kind}), retrying in "
                       f"{outcome.retry_in:.1f} s: {outcome.message}", err=True)

    # Python drops a KeyboardInterrupt raised inside a finalizer (a socket's __del__ run by
    # the GC, say): Ctrl-C is also noted here, and the next page raises it again.
    interrupted = threading.Event()

    def on_sigint(signum, frame) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    def on_page(rows: int, pages: int) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        if progress:
            progress(rows, pages)

    # A heartbeat, so no consumer mistakes this inline run for an orphan of a dead one.
    agent = ConsumerAgent(rt, "cli", threads=1, run_schedules=False, metrics_health=False)
    agent.start()
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return run_inline(rt, run.id, on_retry=on_retry, on_progress=on_page)
    except KeyboardInterrupt:
        run = runs.get_run(run.id)
        if progress:
            progress.clear()
        click.echo(f"Interrupted: run {run.id} marked {run.status}. Rows already written "
                   "are kept; run the collection again to finish.", err=True)
        raise Interrupted from None
    finally:
        signal.signal(signal.SIGINT, previous)
        if progress:
            progress.clear()
        agent.stop()
        rt.close()


class ProgressLine:
    """`rows, pages, elapsed` rewritten in place on stderr (a terminal only), at most 10 a second."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._shown = 0.0
        self._width = 0

    def __call__(self, rows: int, pages: int) -> None:
        now = time.monotonic()
        if now - self._shown < 0.1:
            return
        self._shown = now
        text = (f"  {rows:,} rows, {pages} page{'s' if pages != 1 else ''}, "
                f"{now - self.started:.1f} s")
        click.echo(f"\r{text:<{self._width}}", nl=False, err=True)
        self._width = len(text)

    def clear(self) -> None:
        if self._width:
            click.echo(f"\r{'':<{self._width}}\r", nl=False, err=True)
            self._width = 0


def _open_store(rt: Runtime, provider: str, customer_id: str | None,
                data_types: str | None) -> None:
    """Own the data dir and open the metrics store before an inline run is recorded; when
    another process has either, stop with the way out instead of leaving a failed run behind.

    The owner lock comes first: a dashboard owns the dir before it opens chDB, and an inline
    run that opened it meanwhile would make that dashboard's runs fail.
    """
    from optiinfra_tui.errors import StoreInUse
    from optiinfra_tui.worker.owner import StoreOwned

    try:
        rt.claim_store("cli")
        rt.metrics()
    except StoreOwned as exc:
        rt.close()
        holder = f"pid {exc.owner.pid}" + (f" ({exc.owner.kind})" if exc.owner.kind else "")
        raise _in_use(f"the data dir {exc.home}", holder, provider, customer_id,
                      data_types) from None
    except StoreInUse as exc:  # a chDB path outside the data dir, held by another process
        rt.close()
        raise _in_use(f"the embedded metrics store (chDB at {exc.path})",
                      _process_name(rt, exc.holder), provider, customer_id,
                      data_types) from None


def _in_use(what: str, holder: str, provider: str, customer_id: str | None,
            data_types: str | None) -> click.ClickException:
    queued = f"optiinfra-tui collect {provider}"
    queued += f" --customer {customer_id}" if customer_id else ""
    queued += f" --types {data_types}" if data_types else ""
    return click.ClickException(
        f"--inline can't run here: {what} is in use by {holder}, and chDB opens a data path in "
        f"one process only. Drop --inline: `{queued} --wait` queues the collection for that "
        "process's workers and follows it. Or set CLICKHOUSE_URL to a ClickHouse server, so "
        "that several processes can write. No run was recorded.")


def _process_name(rt: Runtime, pid: str) -> str:
    """'pid 1234 (headless)' when that process's heartbeat says what it is, else 'pid 1234'."""
    from optiinfra_tui.storage.history import WorkerHeartbeat

    try:
        rt.history()
        beat = (WorkerHeartbeat.select(WorkerHeartbeat.kind)
                .where((WorkerHeartbeat.host == rt.host) & (WorkerHeartbeat.pid == int(pid)))
                .first())
    except Exception:  # only a nicer name: the pid alone still says it
        beat = None
    return f"pid {pid} ({beat.kind})" if beat else f"pid {pid}"
