"""The `optiinfra-tui` command: dashboard, headless mode, and collect/history/status/costs.

Exit codes: 0 success, 1 the run (or a backend check) failed, 2 bad usage or configuration,
3 a backend (queue, history, metrics) is unreachable, 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import click

from optiinfra_tui.errors import BackendUnavailable, ConfigError, OptiInfraError
from optiinfra_tui.formats import (
    amount_text,
    attempts_label,
    clip,
    error_text,
    money,
    rfc3339,
    types_label,
)
from optiinfra_tui.settings import load_settings, ordered_types

if TYPE_CHECKING:  # the runtime (and with it huey and the stores) loads only when a command needs it
    from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _runtime(stdout_logs: bool = False):
    from optiinfra_tui.logs import setup_logging
    from optiinfra_tui.worker.runtime import Runtime

    settings = load_settings()
    setup_logging(settings, stdout=stdout_logs)
    return Runtime(settings)


def _emit_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, Decimal):
        return amount_text(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def run_to_dict(run) -> dict:
    return {
        "id": run.id, "task_id": run.task_id, "status": run.status,
        "customer_id": run.customer_id, "provider": run.provider,
        "data_types": list(ordered_types(run.provider, run.types)), "trigger": run.trigger, "attempt": run.attempt,
        "max_attempts": run.max_attempts, "rows": run.metrics_collected,
        "requests": run.requests,
        "error_kind": run.error_kind, "error_message": run.error_message,
        "queued_at": run.queued_at, "started_at": run.started_at,
        "finished_at": run.finished_at, "duration_ms": run.duration_ms, "worker": run.worker,
        "next_attempt_at": run.next_attempt_at, "retry_of": run.retry_of,
    }


def _run_line(run) -> str:
    took = f"{run.duration_ms / 1000:.1f}s" if run.duration_ms is not None else "-"
    line = (f"run {run.id} {run.status}: {run.provider}/{run.customer_id} [{run.data_types}] "
            f"attempt {attempts_label(run.status, run.attempt, run.max_attempts)}, "
            f"{run.metrics_collected} rows, {took}")
    if run.error_message and run.status != "success":
        line += f"\n  {run.error_kind}: {run.error_message}"
    return line


@click.group(invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--headless", is_flag=True, help="Worker pool + scheduler, no UI (for servers).")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Worker threads (default OPTIINFRA_WORKERS or 2; 0 = monitor only).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              help="With --headless: log format on stdout.")
@click.option("--shutdown-timeout", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds to wait for tasks in flight when stopping.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="With --headless: serve Prometheus metrics on this port.")
@click.option("--metrics-host", default=None,
              help="With --headless: the address --metrics-port listens on (default 127.0.0.1; "
                   "0.0.0.0 for every interface).")
@click.option("--keep-days", type=click.IntRange(1), default=None,
              help="Days of history to keep (default OPTIINFRA_KEEP_DAYS or 90).")
@click.version_option(package_name="optiinfra-tui")
@click.pass_context
def cli(ctx: click.Context, headless: bool, workers: int | None, log_format: str,
        shutdown_timeout: float, metrics_port: int | None, metrics_host: str | None,
        keep_days: int | None) -> int | None:
    """Collect cloud cost data on a schedule and watch it happen.

    Without a command: the dashboard, or with --headless the worker pool alone. The options
    below are theirs; each command has its own (optiinfra-tui COMMAND -h).
    """
    _reject_options_that_dont_apply(ctx, headless)
    if ctx.invoked_subcommand:
        return None
    settings = load_settings()
    if keep_days is not None:
        settings = dataclasses.replace(settings, keep_days=keep_days)
    workers = settings.workers if workers is None else workers
    if headless:
        from optiinfra_tui.headless import run_headless

        if workers < 1:
            raise click.UsageError("--headless needs at least one worker (--workers 1 or more).")
        if metrics_host and not metrics_port:
            raise click.UsageError("--metrics-host needs --metrics-port.")
        return run_headless(settings, workers, log_format, shutdown_timeout, metrics_port,
                            metrics_host or "127.0.0.1")
    if workers == 0:
        _reject_worker_options_without_workers(ctx)
    try:
        from optiinfra_tui.tui.app import run_dashboard
    except ImportError:
        click.echo("The dashboard is not built yet. Use `optiinfra-tui --headless` to run "
                   "the worker pool, and `optiinfra-tui --help` for the other commands.")
        return EXIT_OK
    return run_dashboard(settings, workers=workers, shutdown_timeout=shutdown_timeout)


# Top-level options start the dashboard or the headless pool; these two serve only headless,
# and these two only a process that runs workers.
_HEADLESS_ONLY = ("log_format", "metrics_port", "metrics_host")
_WORKERS_ONLY = ("keep_days", "shutdown_timeout")


def _given_options(ctx: click.Context) -> list[click.Parameter]:
    return [p for p in ctx.command.params if p.name and p.expose_value
            and ctx.get_parameter_source(p.name) is click.core.ParameterSource.COMMANDLINE]


def _and(params: list[click.Parameter]) -> str:
    return " and ".join(", ".join(p.opts[0] for p in params).rsplit(", ", 1))


def _plural(params: list, one: str, many: str) -> str:
    return one if len(params) == 1 else many


def _reject_options_that_dont_apply(ctx: click.Context, headless: bool) -> None:
    """A top-level option that would be ignored is a usage error naming where it belongs."""
    given = _given_options(ctx)
    if ctx.invoked_subcommand and given:
        alone = " ".join(p.opts[0] if p.is_flag else f"{p.opts[0]} {ctx.params[p.name]}"
                         for p in given)
        raise click.UsageError(
            f"{_and(given)} {_plural(given, 'belongs', 'belong')} to the dashboard or headless "
            f"mode (`optiinfra-tui {alone}`), not to `{ctx.invoked_subcommand}`. Run "
            f"`optiinfra-tui {ctx.invoked_subcommand} ...` without {_plural(given, 'it', 'them')}.")
    headless_only = [p for p in given if p.name in _HEADLESS_ONLY]
    if headless_only and not headless:
        raise click.UsageError(
            f"{_and(headless_only)} only {_plural(headless_only, 'applies', 'apply')} with "
            "--headless (headless mode's log output and metrics). Add --headless, or drop "
            f"{_plural(headless_only, 'it', 'them')}.")


def _reject_worker_options_without_workers(ctx: click.Context) -> None:
    """--keep-days and --shutdown-timeout act through workers: with none they'd be ignored."""
    given = [p for p in _given_options(ctx) if p.name in _WORKERS_ONLY]
    if given:
        raise click.UsageError(
            f"{_and(given)} only {_plural(given, 'matters', 'matter')} when the dashboard runs "
            "workers (they prune the history and finish tasks on quit), and --workers 0 (or "
            f"OPTIINFRA_WORKERS=0) starts none. Drop {_plural(given, 'it', 'them')}, or give "
            "it workers.")


@cli.command()
@click.argument("provider")
@click.option("--customer", "customer_id", default=None, help="Customer id (default DEFAULT_CUSTOMER_ID).")
@click.option("--types", "data_types", default=None, help="Comma-separated: cost,account,resource.")
@click.option("--wait", is_flag=True, help="Block until the run ends; exit 1 if it failed.")
@click.option("--inline", is_flag=True, help="Run it in this process (no consumer needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--timeout", type=click.FloatRange(0), default=None, help="Give up waiting after N seconds.")
def collect(provider: str, customer_id: str | None, data_types: str | None, wait: bool,
            inline: bool, as_json: bool, timeout: float | None) -> int:
    """Start a collection for PROVIDER (e.g. vultr)."""
    from optiinfra_tui.settings import validate_data_types, validate_provider
    from optiinfra_tui.worker import runs
    from optiinfra_tui.worker.collection import request_collection, run_inline

    rt = _runtime()
    customer_given = customer_id is not None
    customer_id = customer_id or rt.settings.default_customer_id
    validate_provider(provider)
    types = validate_data_types(provider, data_types)
    if inline:
        from optiinfra_tui.settings import validate_customer_id
        from optiinfra_tui.storage.embedded import require_embedded

        validate_customer_id(customer_id)
        rt.settings.customer(customer_id)
        require_embedded(rt.settings.clickhouse_url)  # before a run is recorded that can't succeed
        _open_store_for_inline(rt, provider, customer_id if customer_given else None, data_types)
        rt.history()
        run = runs.create_run(customer_id, provider, types, "cli",
                              max_attempts=rt.settings.max_retries + 1)
        if not as_json:
            click.echo(f"run {run.id} started inline")

        def on_retry(outcome):
            if not as_json:
                click.echo(f"  attempt failed ({outcome.error_kind}), retrying in "
                           f"{outcome.retry_in:.1f} s: {outcome.message}", err=True)

        # A heartbeat, so no consumer mistakes this inline run for an orphan of a dead one.
        from optiinfra_tui.worker.agent import ConsumerAgent

        agent = ConsumerAgent(rt, "cli", threads=1, run_schedules=False, metrics_health=False)
        agent.start()
        try:
            run = run_inline(rt, run.id, on_retry=on_retry)
        except KeyboardInterrupt:
            run = runs.get_run(run.id)
            click.echo(f"Interrupted: run {run.id} marked {run.status}. Rows already written "
                       "are kept; run the collection again to finish.", err=True)
            return EXIT_INTERRUPTED
        finally:
            agent.stop()
            rt.close()
    else:
        run = request_collection(rt, customer_id, provider, types, trigger="cli")
        if not as_json:
            click.echo(f"{run.task_id} queued (run {run.id})")
        warned = _warn_without_consumer(rt)
        if not wait:
            if as_json:
                _emit_json(run_to_dict(run))
            return EXIT_OK
        run = _wait(rt, run.id, timeout, quiet=as_json, hinted=warned)
    if as_json:
        _emit_json(run_to_dict(run))
    else:
        click.echo(_run_line(run))
    return EXIT_OK if run.status == "success" else EXIT_FAILED


def _open_store_for_inline(rt: Runtime, provider: str, customer_id: str | None,
                           data_types: str | None) -> None:
    """Open the metrics store before an inline run is recorded; when another process holds
    the embedded one, stop with the way out instead of leaving a failed run behind."""
    from optiinfra_tui.errors import StoreInUse

    try:
        rt.metrics()
    except StoreInUse as exc:
        rt.close()
        queued = f"optiinfra-tui collect {provider}"
        queued += f" --customer {customer_id}" if customer_id else ""
        queued += f" --types {data_types}" if data_types else ""
        raise click.ClickException(
            f"--inline can't run here: the embedded metrics store (chDB at {exc.path}) is in "
            f"use by {_process_name(rt, exc.holder)}, and chDB opens a data path in one process "
            f"only. Drop --inline: `{queued} --wait` queues the collection for that process's "
            "workers and follows it. Or set CLICKHOUSE_URL to a ClickHouse server, so that "
            "several processes can write. No run was recorded.") from None


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


def _no_consumer_hint(rt: Runtime) -> str:
    """How to start a consumer that shares this process's queue."""
    shared = ("the same REDIS_URL and DATABASE_URL" if rt.settings.redis_url
              else f"the same OPTIINFRA_HOME ({rt.settings.home})")
    return (f"Start one with {shared}: `optiinfra-tui --headless`, `huey_consumer "
            "huey_config.huey -w 2 -k thread`, or the dashboard (`optiinfra-tui`).")


def _warn_without_consumer(rt: Runtime) -> bool:
    """Warn on stderr when no consumer has a fresh heartbeat; True if it warned."""
    from optiinfra_tui.worker import monitor

    if monitor.consumers():
        return False
    stale = int(monitor.STALE_AFTER.total_seconds())
    click.echo(f"warning: no consumer is running (none has written a heartbeat in the last "
               f"{stale} s), so this collection waits in the queue until one starts. "
               f"{_no_consumer_hint(rt)}", err=True)
    return True


def _wait(rt: Runtime, run_id: int, timeout: float | None, quiet: bool, hinted: bool = False):
    from optiinfra_tui.worker import monitor, runs

    deadline = None if timeout is None else time.monotonic() + timeout
    started = time.monotonic()
    last_status = None
    while True:
        run = runs.wait_for(run_id, timeout=1.0, poll=0.1)
        if run.status != last_status and not quiet and run.status not in ("queued",):
            label = attempts_label(run.status, run.attempt, run.max_attempts)
            click.echo(f"  {run.status} (attempt {label})", err=True)
        last_status = run.status
        if run.is_final:
            return run
        if not hinted and time.monotonic() - started > 10 and not monitor.consumers():
            hinted = True
            click.echo(f"  still no consumer is running. {_no_consumer_hint(rt)}", err=True)
        if deadline is not None and time.monotonic() >= deadline:
            click.echo(f"Still {run.status} after {timeout:g} s; the run continues "
                       f"(see `optiinfra-tui history`).", err=True)
            return run


@cli.command()
@click.option("--status", type=click.Choice(["queued", "running", "retrying", "success", "failed", "canceled"]))
@click.option("--provider", default=None)
@click.option("--customer", "customer_id", default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def history(status: str | None, provider: str | None, customer_id: str | None, limit: int,
            as_json: bool) -> int:
    """List collection runs, newest first."""
    from optiinfra_tui.worker import runs

    rt = _runtime()
    rt.history()
    found = runs.list_runs(status=status, provider=provider, customer_id=customer_id, limit=limit)
    if as_json:
        _emit_json([run_to_dict(r) for r in found])
        return EXIT_OK
    if not found:
        click.echo("No runs yet. Start one with `optiinfra-tui collect vultr`.")
        return EXIT_OK
    widths = (6, 9, 8, 18, 21, 8, 5, 8, 7, 19)
    click.echo(_history_line(widths, ("ID", "STATUS", "PROVIDER", "CUSTOMER", "TYPES",
                                      "TRIGGER", "TRY", "ROWS", "TOOK", "QUEUED (UTC)"), "ERROR"))
    # On a terminal the error is cut to its width; piped, it is whole (for grep and scripts).
    room = (shutil.get_terminal_size().columns - sum(widths) - 2 * len(widths)
            if sys.stdout.isatty() else None)
    for r in found:
        took = f"{r.duration_ms / 1000:.1f}s" if r.duration_ms is not None else "-"
        error = error_text(r.error_kind, r.error_message)
        click.echo(_history_line(widths, (
            r.id, r.status, r.provider, r.customer_id, types_label(r.provider, r.data_types),
            r.trigger, attempts_label(r.status, r.attempt, r.max_attempts),
            r.metrics_collected, took, f"{r.queued_at:%Y-%m-%d %H:%M:%S}"),
            clip(error, max(room, 20), words=True) if room is not None else error))
    return EXIT_OK


def _history_line(widths: tuple[int, ...], values: tuple, error: str) -> str:
    """One line of `history`: numbers right-aligned, every cut cell ending in `…`."""
    cells = [f"{v:>{w}}" if isinstance(v, int) else f"{clip(str(v), w):<{w}}"
             for v, w in zip(values, widths, strict=True)]
    return "  ".join(cells + [error]).rstrip()


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json: bool) -> int:
    """Backends, queue depth, scheduled and retrying tasks, workers, next runs."""
    from optiinfra_tui.worker import monitor

    rt = _runtime()
    snap = monitor.snapshot(rt)
    down = [h for h in snap.health if h.name in ("queue", "history", "metrics") and not h.ok]
    if as_json:
        _emit_json(snap.to_json())
        return EXIT_FAILED if down else EXIT_OK
    click.echo(f"mode: {snap.mode}  (queue={snap.backends['queue']}, "
               f"history={snap.backends['history']}, metrics={snap.backends['metrics']})")
    if snap.owner is not None:  # chDB: one process per data dir runs the collections
        click.echo("collections run in: "
                   + (snap.owner or "no process (start optiinfra-tui or --headless)"))
    click.echo("backends:")
    for h in snap.health:
        state = f"ok {h.latency_ms:.1f} ms" if h.ok and h.latency_ms is not None else (
            "ok" if h.ok else "DOWN")
        late = h.late(snap.taken_at)
        when = f" (checked {h.checked_at:%H:%M:%S} UTC{', ' + late if late else ''})" if (
            h.checked_at) else ""
        click.echo(f"  {h.name:<22} {state:<14} {h.message}{when}".rstrip())
    if snap.queue:
        click.echo(f"queue: {snap.queue.pending} pending, {len(snap.queue.scheduled)} scheduled, "
                   f"{len(snap.queue.retrying)} retrying")
        for run_id, label, at in snap.queue.retrying:
            click.echo(f"  retry run {run_id} {label} at {at:%H:%M:%S} UTC" if at else
                       f"  retry run {run_id} {label}")
    click.echo(f"workers: {len(snap.workers)}")
    for w in snap.workers:
        click.echo(f"  {w.host}:{w.pid} {w.thread:<10} {w.kind:<13} {w.state:<5} "
                   f"{w.task or '-':<30} done {w.processed} failed {w.failed}")
    click.echo("schedules:")
    for s in snap.schedules:
        nxt = f"{s.next_run:%Y-%m-%d %H:%M:%S} UTC" if s.next_run else "-"
        click.echo(f"  {s.name:<20} {s.provider}/{','.join(s.data_types):<14} {s.every:<16} "
                   f"next {nxt}{'  (paused)' if s.paused else ''}")
        if s.credentials_note():
            click.echo(f"    {s.credentials_note()}")
    st = snap.stats
    rate = f"{st.success_rate:.0%}" if st.success_rate is not None else "-"
    click.echo(f"last hour: {st.runs} runs, success {rate}, p50 {st.p50_ms or '-'} ms, "
               f"p95 {st.p95_ms or '-'} ms, {st.rows} rows")
    return EXIT_FAILED if down else EXIT_OK


@cli.command()
@click.option("--by", type=click.Choice(["provider", "service", "day", "customer"]), default="provider",
              show_default=True)
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Only charges from this date on (YYYY-MM-DD), spread per day over their periods.")
@click.option("--json", "as_json", is_flag=True, help="Totals as decimal strings.")
def costs(by: str, since: datetime | None, as_json: bool) -> int:
    """What has been collected, read back from ClickHouse."""
    rt = _runtime()
    try:
        store = rt.metrics()
        totals = store.costs(by=by, since=since.date() if since else None)
        summary = store.summary() if not as_json else []
    finally:
        rt.close()
    if as_json:
        _emit_json([{"key": t.key, "currency": t.currency,
                     "billed_cost": amount_text(t.billed_cost, t.currency),
                     "estimated_cost": amount_text(t.estimated_cost, t.currency),
                     "total": amount_text(t.total, t.currency), "rows": t.rows}
                    for t in totals])
        return EXIT_OK
    if not totals:
        click.echo("No cost data yet. Run `optiinfra-tui collect vultr --inline`.")
        return EXIT_OK
    click.echo(f"{by.upper():<32} {'CUR':<4} {'BILLED':>16} {'ESTIMATED':>14} {'TOTAL':>16} "
               f"{'ROWS':>10}")
    for t in totals:
        click.echo(_costs_line(clip(t.key, 32), t.currency, t.billed_cost, t.estimated_cost,
                               t.rows))
    click.echo()
    for currency in dict.fromkeys(t.currency for t in totals):  # never add currencies
        mine = [t for t in totals if t.currency == currency]
        click.echo(_costs_line(
            "TOTAL", currency, sum(t.billed_cost for t in mine),
            sum(t.estimated_cost for t in mine),
            sum(t.rows for t in mine) if by != "day" else None))
    for s in summary:
        click.echo(f"Month to date ({s.month_start:%Y-%m-%d} to {s.today:%Y-%m-%d}, UTC): "
                   f"{money(s.month_to_date, s.currency)}")
    click.echo("\nBILLED: invoice lines. ESTIMATED: pending charges of months not invoiced yet. "
               "TOTAL: both.\nMONTH TO DATE: each charge spread over the days of its charge "
               "period, summed over this month's days so far." + (
                   f"\nFrom {since:%Y-%m-%d} on: charges spread the same way, counted from "
                   "that day." if since else "") + (
                   "\nBy day, ROWS are the lines charged on that day." if by == "day" else ""))
    return EXIT_OK


def _costs_line(key: str, currency: str, billed: Decimal, estimated: Decimal,
                rows: int | None) -> str:
    amounts = [f"{money(v, currency, symbol=False):>{w}}"
               for v, w in ((billed, 16), (estimated, 14), (billed + estimated, 16))]
    return (f"{key:<32} {currency:<4} {' '.join(amounts)} "
            f"{'-' if rows is None else rows:>10}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every error becomes a message and an exit code, never a traceback."""
    from optiinfra_tui.worker.startup import prepare_process

    prepare_process()  # before the dashboard, headless or an inline run starts a thread
    import peewee

    if not logging.getLogger().handlers:
        logging.getLogger().addHandler(logging.NullHandler())  # no traceback on the terminal
    try:
        code = cli.main(args=argv, prog_name="optiinfra-tui", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = EXIT_USAGE
    except ConfigError as exc:
        click.echo(f"optiinfra-tui: configuration error: {exc}", err=True)
        code = EXIT_USAGE
    except BackendUnavailable as exc:
        click.echo(f"optiinfra-tui: {exc}", err=True)
        code = EXIT_BACKEND
    except OptiInfraError as exc:
        click.echo(f"optiinfra-tui: {exc}", err=True)
        code = EXIT_FAILED
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except (peewee.OperationalError, peewee.InterfaceError) as exc:
        log.warning("history store error: %s", exc)
        click.echo("optiinfra-tui: the history database is unreachable. Check DATABASE_URL "
                   "and that the server is running.", err=True)
        code = EXIT_BACKEND
    except Exception as exc:
        log.exception("unexpected error")
        click.echo(f"optiinfra-tui: unexpected error ({type(exc).__name__}). This is a bug; "
                   "the details are in the log file in the data dir.", err=True)
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else EXIT_OK)


if __name__ == "__main__":
    main()
