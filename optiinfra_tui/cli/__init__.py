"""The `optiinfra-tui` command: dashboard, headless mode, and collect/history/status/costs.

Exit codes: 0 success, 1 the run (or a backend check) failed, 2 bad usage or configuration,
3 a backend (queue, history, metrics) is unreachable, 130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from optiinfra_tui.cli.commands import (
    EXIT_BACKEND,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    cli,
)
from optiinfra_tui.errors import BackendUnavailable, ConfigError, OptiInfraError

__all__ = ["cli", "main"]

log = logging.getLogger("optiinfra.cli")


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
        where = _save_traceback(exc)
        click.echo(f"optiinfra-tui: unexpected error ({type(exc).__name__}). This is a bug; "
                   f"the details are in {where}.", err=True)
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else EXIT_OK)



def _save_traceback(exc: BaseException) -> str:
    """Write a bug's traceback, secrets masked, beside the data (not into the workers' log)."""
    import traceback

    from optiinfra_tui.datadir import make_dir, write_file
    from optiinfra_tui.settings import default_home, load_settings
    from optiinfra_tui.text import scrub

    try:
        settings = load_settings()
        home, secrets = settings.home, settings.secrets()
    except Exception:  # the settings are what failed: the traceback still matters
        home, secrets = default_home(os.environ), []
    path = home / "cli-error.log"
    try:
        make_dir(home)
        write_file(path, scrub("".join(traceback.format_exception(exc)), secrets))
    except OSError:
        return "no file (the data dir is not writable)"
    return str(path)
