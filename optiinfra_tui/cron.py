"""Standard five-field cron, checked with cronsim: settings validates with it, schedules runs it.

A module of its own so that settings (the bottom layer) need not import the worker's schedules.
"""

from __future__ import annotations

from datetime import datetime

from cronsim import CronSim, CronSimError

from optiinfra_tui.errors import ConfigError


def parse_cron(expr: str, where: str = "cron") -> str:
    """The expression, checked as standard five-field cron; ConfigError when it doesn't parse."""
    fields = expr.split() if isinstance(expr, str) else []
    if len(fields) != 5:
        raise ConfigError(f"{where}: cron {expr!r} must have 5 fields "
                          "(minute hour day month day-of-week), e.g. \"*/15 * * * *\".")
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ConfigError(f"{where}: cron {expr!r} is not valid ({exc}).") from None
    return expr
