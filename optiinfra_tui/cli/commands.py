"""The click commands: the dashboard or headless mode, and collect, history, status, costs."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from typing import TYPE_CHECKING

import click

from optiinfra_tui import providers
from optiinfra_tui.cli.output import (
    emit_json,
    print_costs,
    print_history,
    print_status,
    run_line,
)
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.formats import attempts_label, costs_json
from optiinfra_tui.settings import all_data_types, check_data_type_names, load_settings
from optiinfra_tui.storage.history import STATUSES
from optiinfra_tui.worker.runs import RunRow

if TYPE_CHECKING:  # the runtime (and with it huey and the stores) loads only when a command needs it
    from optiinfra_tui.worker.runtime import Runtime

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class ProviderChoice(click.Choice):
    """The installed providers (their entry points), read when the command line is parsed."""

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:
        return providers.names()

    @choices.setter
    def choices(self, _value) -> None:  # click sets it in __init__; the specs decide
        pass

    def convert(self, value, param, ctx):
        try:
            return providers.spec(value).name
        except ConfigError as exc:  # the same text wherever a provider is named
            self.fail(str(exc), param, ctx)


class DataTypesChoice(click.Choice):
    """Comma-separated data types, each one some installed provider's (the provider's own list
    is checked with the provider)."""

    name = "data types"

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:
        return all_data_types()

    @choices.setter
    def choices(self, _value) -> None:
        pass

    def get_metavar(self, param, ctx=None) -> str:
        return f"[{','.join(self.choices)}]"

    def convert(self, value, param, ctx):
        wanted = [t.strip() for t in str(value).split(",") if t.strip()]
        try:
            check_data_type_names(wanted)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)
        return ",".join(wanted)


def _runtime() -> Runtime:
    """The settings and stores of a command; its log lines go to stderr, never the log file."""
    from optiinfra_tui.logs import setup_logging
    from optiinfra_tui.worker.runtime import Runtime

    settings = load_settings()
    setup_logging(settings, stderr=True, file=False)
    return Runtime(settings)


EPILOG = """\b
Exit codes:
  0    success
  1    the run (or a backend check) failed
  2    bad usage or configuration
  3    a backend (queue, history, metrics) is unreachable
  130  interrupted

\b
Environment (the main variables; the README lists them all):
  OPTIINFRA_HOME     data dir (default: the platform's, ~/.local/share/optiinfra)
  OPTIINFRA_CONFIG   TOML file of customers and schedules (default:
                     ~/.config/optiinfra/config.toml when it exists)
  REDIS_URL          Huey's Redis (unset: a SQLite queue in the data dir)
  DATABASE_URL       collection history (default: SQLite in the data dir)
  CLICKHOUSE_URL     metrics store (default: chDB in the data dir)
{providers}
  OPTIINFRA_WORKERS  worker threads (default 2)
  MAX_RETRIES, RETRY_DELAY  transient-failure retries (3) and base delay (60 s)

\b
Shell completion (bash; zsh and fish alike, with zsh_source / fish_source):
  eval "$(_OPTIINFRA_TUI_COMPLETE=bash_source optiinfra-tui)"
"""


def _provider_lines() -> str:
    """Each installed provider's main variables for the default customer, from its spec."""
    lines = []
    for spec in providers.specs().values():
        names = [*spec.detect, *(f.standard for f in spec.fields.values() if f.standard)]
        names = list(dict.fromkeys(names))[:3]
        said, what = ", ".join(names), f"the default customer's {spec.title} access"
        lines.append(f"  {said:<17}  {what}" if len(said) <= 17 else f"  {said}\n{'':21}{what}")
    return "\n".join(lines)


class _Group(click.Group):
    """The epilog's provider lines come from the installed providers, read when help is shown."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.epilog = EPILOG.replace("{providers}", _provider_lines())
        super().format_epilog(ctx, formatter)


@click.group(cls=_Group, invoke_without_command=True, epilog=EPILOG,
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
@click.option("--api-port", type=click.IntRange(1, 65535), default=None,
              help="With --headless: serve the HTTP API on this port (default [api] port; "
                   "needs OPTIINFRA_API_TOKEN and the api extra).")
@click.option("--api-host", default=None,
              help="With --headless: the address --api-port listens on (default [api] host, "
                   "else 127.0.0.1).")
@click.option("--keep-days", type=click.IntRange(1), default=None,
              help="Days of history to keep (default OPTIINFRA_KEEP_DAYS or 90).")
@click.version_option(package_name="optiinfra-tui")
@click.pass_context
def cli(ctx: click.Context, headless: bool, workers: int | None, log_format: str,
        shutdown_timeout: float, metrics_port: int | None, metrics_host: str | None,
        api_port: int | None, api_host: str | None, keep_days: int | None) -> int | None:
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
        api_port = api_port or settings.api.port
        if api_host and not api_port:
            raise click.UsageError("--api-host needs --api-port (or port in [api]).")
        return run_headless(settings, workers, log_format, shutdown_timeout, metrics_port,
                            metrics_host or "127.0.0.1", api_port, api_host or settings.api.host)
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
_HEADLESS_ONLY = ("log_format", "metrics_port", "metrics_host", "api_port", "api_host")
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
            "--headless (headless mode's log output, metrics and API). Add --headless, or drop "
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
@click.argument("provider", type=ProviderChoice())
@click.option("--customer", "customer_id", default=None, help="Customer id (default DEFAULT_CUSTOMER_ID).")
@click.option("--types", "data_types", type=DataTypesChoice(), default=None,
              help="Comma-separated data types of PROVIDER (default: its default types).")
@click.option("--wait", is_flag=True, help="Block until the run ends; exit 1 if it failed.")
@click.option("--inline", is_flag=True, help="Run it in this process (no consumer needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--timeout", type=click.FloatRange(0), default=None, help="Give up waiting after N seconds.")
def collect(provider: str, customer_id: str | None, data_types: str | None, wait: bool,
            inline: bool, as_json: bool, timeout: float | None) -> int:
    """Start a collection for PROVIDER (an installed provider: see the choices above)."""
    from optiinfra_tui.settings import validate_data_types
    from optiinfra_tui.worker.collection import request_collection

    rt = _runtime()
    customer_given = customer_id is not None
    customer_id = customer_id or rt.settings.default_customer_id
    types = validate_data_types(provider, data_types)  # PROVIDER was checked by ProviderChoice
    if inline:
        from optiinfra_tui.cli.inline import Interrupted, collect_inline

        try:
            run = collect_inline(rt, provider, customer_id, types, customer_given, data_types,
                                 quiet=as_json)
        except Interrupted:
            return EXIT_INTERRUPTED
    else:
        run = request_collection(rt, customer_id, provider, types, trigger="cli")
        if not as_json:
            click.echo(f"{run.task_id} queued (run {run.id})")
        warned = _warn_without_consumer(rt)
        if not wait:
            if as_json:
                emit_json(RunRow.of(run).to_json())
            return EXIT_OK
        run = _wait(rt, run.id, timeout, quiet=as_json, hinted=warned)
    if as_json:
        emit_json(RunRow.of(run).to_json())
    else:
        click.echo(run_line(run))
    return EXIT_OK if run.status == "success" else EXIT_FAILED


def _no_consumer_hint(rt: Runtime) -> str:
    """How to start a consumer that shares this process's queue."""
    shared = ("the same REDIS_URL and DATABASE_URL" if rt.settings.redis_url
              else f"the same OPTIINFRA_HOME ({rt.settings.home})")
    return (f"Start one with {shared}: `optiinfra-tui --headless`, `huey_consumer "
            "huey_config.huey -w 2 -k thread`, or the dashboard (`optiinfra-tui`).")


def _warn_without_consumer(rt: Runtime, waits: str = "this collection waits") -> bool:
    """Warn on stderr when no consumer has a fresh heartbeat; True if it warned."""
    from optiinfra_tui.worker import monitor

    if monitor.consumers():
        return False
    stale = int(monitor.STALE_AFTER.total_seconds())
    click.echo(f"warning: no consumer is running (none has written a heartbeat in the last "
               f"{stale} s), so {waits} in the queue until one starts. "
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
@click.option("--status", type=click.Choice(STATUSES),
              help="Only runs in this state.")
@click.option("--provider", type=ProviderChoice(), default=None, help="Only this provider's runs.")
@click.option("--customer", "customer_id", default=None, help="Only this customer's runs.")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="At most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as a JSON array.")
def history(status: str | None, provider: str | None, customer_id: str | None, limit: int,
            as_json: bool) -> int:
    """List collection runs, newest first."""
    from optiinfra_tui.worker import runs

    rt = _runtime()
    rt.history()
    found = runs.list_runs(status=status, provider=provider, customer_id=customer_id, limit=limit)
    if as_json:
        emit_json([RunRow.of(r).to_json() for r in found])
        return EXIT_OK
    if not found:
        click.echo(f"No runs yet. Start one with `optiinfra-tui collect PROVIDER` "
                   f"({', '.join(providers.names())}).")
        return EXIT_OK
    print_history(found)
    return EXIT_OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON.")
def status(as_json: bool) -> int:
    """Backends, queue depth, scheduled and retrying tasks, workers, next runs."""
    from optiinfra_tui.worker import monitor

    rt = _runtime()
    snap = monitor.snapshot(rt)
    down = [h for h in snap.health if h.name in ("queue", "history", "metrics") and not h.ok]
    if as_json:
        emit_json(snap.to_json())
    else:
        print_status(snap)
    return EXIT_FAILED if down else EXIT_OK


@cli.command()
@click.option("--by", type=click.Choice(["provider", "service", "day", "customer"]), default="provider",
              show_default=True, help="What each line totals.")
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
        emit_json(costs_json(totals))
        return EXIT_OK
    if not totals:
        click.echo(f"No cost data yet. Run `optiinfra-tui collect PROVIDER --inline` "
                   f"({', '.join(providers.names())}).")
        return EXIT_OK
    print_costs(by, since, totals, summary)
    return EXIT_OK




@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="The port browsers connect to.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on (0.0.0.0: every interface; needs a token).")
@click.option("--public-url", default=None,
              help="The URL browsers use, when a proxy stands in front (https://ops.example).")
def serve(port: int, host: str, public_url: str | None) -> int:
    """The dashboard in a browser: each browser session watches (no workers, no chDB)."""
    from optiinfra_tui import access
    from optiinfra_tui.logs import setup_logging
    from optiinfra_tui.web import require_web_extra

    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise click.UsageError(f"--public-url {public_url!r}: give the address browsers use, "
                               "starting with https:// (or http://).")
    require_web_extra()
    settings = load_settings()
    tokens = access.tokens(settings)
    access.check_listener(host, "--host", tokens, "the browser dashboard")
    setup_logging(settings, stderr=True, file=False)
    from optiinfra_tui.web.server import serve_dashboard
    from optiinfra_tui.worker.runtime import Runtime

    rt = Runtime(settings)
    rt.history()
    _warn_without_consumer(rt, "collections started in a browser wait")
    return serve_dashboard(host, port, tokens, public_url)
