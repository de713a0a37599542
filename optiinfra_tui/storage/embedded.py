"""Whether chDB, the embedded metrics store, is installed: it is the `embedded` extra.

chDB brings pyarrow, pandas and numpy (~830 MB); servers that write to a ClickHouse server
(CLICKHOUSE_URL=http://...) install without it.
"""

from __future__ import annotations

import importlib.util

from optiinfra_tui.errors import ConfigError


def embedded_missing(clickhouse_url: str, module: str = "chdb") -> str | None:
    """What to do when the store is chDB and chDB isn't installed; None when nothing is missing."""
    if not clickhouse_url.startswith("chdb:"):
        return None
    try:
        # find_spec locates the package without importing it (chDB's import loads its engine).
        if importlib.util.find_spec(module) is not None:
            return None
    except (ImportError, ValueError):
        pass
    return ("The metrics store is chDB in-process (CLICKHOUSE_URL unset or chdb://), and chDB "
            "is not installed. Install it with `pip install \"optiinfra-tui[embedded]\"` "
            "(`pip install -e \".[embedded]\"` in a clone), or set CLICKHOUSE_URL to a "
            "ClickHouse server (http://user:password@host:8123/db).")


def require_embedded(clickhouse_url: str) -> None:
    """ConfigError saying which of the two to do when chDB is the store and isn't installed."""
    problem = embedded_missing(clickhouse_url)
    if problem:
        raise ConfigError(problem)
