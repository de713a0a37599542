"""Opening ClickHouse, a server over HTTP or chDB in-process, and what every store does with it.

The only module that talks to clickhouse-connect and chDB, and so the only one that knows
their internals (the versions it was checked against are pinned in pyproject.toml):
clickhouse_connect is imported only when a store opens, so this module stays cheap to import.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import unquote, urlparse, urlunparse

from optiinfra_tui.datadir import FILE_MODE, make_dir
from optiinfra_tui.errors import ConfigError, OptiInfraError, StoreInUse, TransientError
from optiinfra_tui.storage.embedded import require_embedded
from optiinfra_tui.storage.metrics_schema import (
    MIGRATIONS,
    SCHEMA_VERSIONS,
    TABLES,
    WIRE_TYPES,
    SchemaVersion,
    pivot,
    wire_columns,
)
from optiinfra_tui.text import first_line, safe_url, scrub

log = logging.getLogger("optiinfra.metrics")

DEFAULT_DATABASE = "optiinfra"
LOCK_FILE = "optiinfra-metrics.lock"
_DB_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ERRNO_RE = re.compile(r"\[Errno -?\d+\][^\"')]*")
_TIMEOUT_RE = re.compile(r"(Read|Connect|Connection) timed out")
_HTTP_STATUS_RE = re.compile(r"HTTP status (\d{3})")
# Server error codes: the user or password was refused; the server is overloaded or cut off.
_AUTH_CODES = frozenset({192, 193, 194, 195, 497, 516})
_TRANSIENT_CODES = frozenset({159, 202, 209, 210, 241, 242, 252, 425, 999})


class ClickHouse:
    """One client with the schema in place, and the plumbing every query goes through."""

    def __init__(self, client, database: str, label: str, secrets: tuple[str, ...] = (),
                 path: str | None = None, lock_fd: int | None = None) -> None:
        self._client = client
        self.database = database
        self.label = label  # never holds a password
        self.path = path
        self._secrets = secrets
        self._lock_fd = lock_fd
        self._refs = 1
        self._closed = False

    # --- plumbing -----------------------------------------------------------------------------

    def _init_schema(self) -> None:
        self._command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        for table in TABLES.values():
            self._command(table.ddl(self.database))
        self._migrate()

    def _migrate(self) -> int:
        """Apply the schema steps this store lacks; returns its version afterwards."""
        current = self._rows(f"SELECT max(version) FROM {self._t(SCHEMA_VERSIONS)}")[0][0]
        for version in sorted(v for v in MIGRATIONS if v > current):
            for statement in MIGRATIONS[version]:
                self._command(statement.format(db=self.database))
            self._insert(SCHEMA_VERSIONS, [SchemaVersion(version, datetime.now(UTC))])
            log.info("metrics schema of %s migrated to version %d", self.label, version)
            current = version
        return current

    @contextmanager
    def _backend(self) -> Iterator[None]:
        if self._closed:
            raise RuntimeError(f"The metrics store ({self.label}) is closed.")
        try:
            yield
        except OptiInfraError:
            raise
        except Exception as exc:
            mapped = _translate(exc, self.label, self._secrets)
            if mapped is None:
                raise
            raise mapped from None

    def _rows(self, sql: str, params: dict | None = None) -> list[tuple]:
        with self._backend():
            return self._client.query(sql, parameters=params).result_rows

    def _command(self, sql: str, params: dict | None = None) -> None:
        with self._backend():
            self._client.command(sql, parameters=params)

    def _insert(self, name: str, rows: list, all_estimates: bool = False) -> None:
        table = TABLES[name]
        data = pivot(table, rows)
        if all_estimates:
            data[table.columns.index("is_estimate")] = [True] * len(rows)
        self._insert_columns(name, data)

    def _insert_columns(self, name: str, data: list[list]) -> None:
        table = TABLES[name]
        with self._backend():
            context = self._client.create_insert_context(
                name, table.columns, self.database, column_type_names=WIRE_TYPES[name],
                column_oriented=True, data=wire_columns(table, data))
            try:
                self._client.data_insert(context)
            finally:
                # The context refers to itself (a bound method of its own): the columns it
                # holds would wait for a garbage collection pass to be freed.
                context.data = [[]]

    def _t(self, name: str) -> str:
        return f"{self.database}.{name}"

    def ping(self) -> float:
        """Seconds for SELECT 1."""
        start = time.perf_counter()
        self._rows("SELECT 1")
        return time.perf_counter() - start

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release this handle; a shared chDB store closes when its last holder closes it."""
        if self._closed:
            return
        if self.path is not None:
            with _registry_lock:
                self._refs -= 1
                if self._refs > 0:
                    return
                _registry.pop(self.path, None)
                self._shutdown()
        else:
            self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        try:
            self._client.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None


S = TypeVar("S", bound=ClickHouse)


# --- opening ----------------------------------------------------------------------------------

_registry: dict[str, ClickHouse] = {}  # chDB path -> its one store in this process
# chDB's server settings, given when it opens. bench/chdb_settings.py measured the caches,
# the pools and a memory cap: none moved the resident set beyond noise (two thirds of chDB's
# is its library's code, mapped when the engine starts), so chDB's defaults stay. Kept: its
# memory worker reads the allocator's figures every second instead of every 100 ms, which
# was ~0.15 % of a core in an idle dashboard, with ingest and queries unchanged.
CHDB_OPTIONS: dict[str, str] = {"memory_worker_period_ms": "1000"}
_registry_lock = threading.Lock()


def open_store(url: str, store_type: type[S]) -> S:
    """Open the store at CLICKHOUSE_URL: chdb:///abs/path (in-process) or http(s)://.

    chDB holds one engine per process and one process per path, so its store is shared:
    every open of a path returns the same store, closed when the last holder closes it.
    """
    scheme = urlparse(url).scheme
    if scheme == "chdb":
        require_embedded(url)
        return _open_chdb(url, store_type)
    if scheme in ("http", "https", "clickhouse"):
        return _open_server(url, store_type)
    raise ConfigError(f"CLICKHOUSE_URL has scheme {scheme or '(none)'!r}, which is not supported. "
                      "Use chdb:///absolute/path or http(s)://user:password@host:8123/database.")


def _open_chdb(url: str, store_type: type[S]) -> S:
    parsed = urlparse(url)
    if parsed.netloc or not parsed.path.startswith("/"):
        raise ConfigError(f"CLICKHOUSE_URL={url!r}: a chDB URL names an absolute directory, "
                          "e.g. chdb:///home/me/.local/share/optiinfra/clickhouse.")
    path = os.path.realpath(unquote(parsed.path))
    with _registry_lock:
        store = _registry.get(path)
        if store is not None:
            store._refs += 1
            return store
        if _registry:
            other = next(iter(_registry))
            raise ConfigError(f"chDB can open one data path per process: {other} is open here, "
                              f"so {path} can't be. Close the other store first.")
        fd = _lock_path(path)
        try:
            import clickhouse_connect

            _lists_not_dataframes()
            client = clickhouse_connect.get_client(dsn=f"chdb://{path}",
                                                   chdb_options=CHDB_OPTIONS)
        except Exception as exc:
            os.close(fd)
            raise ConfigError(f"chDB could not open {path}: {first_line(exc)}") from None
        store = store_type(client, DEFAULT_DATABASE, f"chDB at {path}", path=path, lock_fd=fd)
        try:
            store._init_schema()
        except BaseException:
            store._shutdown()
            raise
        _registry[path] = store
        return store


def _lists_not_dataframes() -> None:
    """Keep clickhouse_connect from importing pandas and numpy (~80 MB resident) on the first
    insert just to ask whether the data is a DataFrame: ours are lists."""
    # Libraries this process already loaded stay usable.
    from clickhouse_connect.driver import options

    for attr, module in (("pd", "pandas"), ("pd_time_test", "pandas"), ("np", "numpy")):
        if module not in sys.modules and attr not in vars(options):
            setattr(options, attr, None)


# chdb 4.x: this module imports pyarrow as it loads, only for Arrow results, and works without it.
_CHDB_ARROW_MODULE = "chdb.state.sqlitelike"


class _PyarrowNotForChdb:
    """An import finder that answers chDB's `import pyarrow` with ImportError, and only chDB's:
    any other importer, in any thread, finds the real pyarrow."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname == "pyarrow":
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_globals.get("__name__") == _CHDB_ARROW_MODULE:
                    raise ModuleNotFoundError("pyarrow is not loaded for chDB", name=fullname)
                frame = frame.f_back
        return None


def keep_pyarrow_from_chdb() -> None:
    """Open chDB without pyarrow and numpy (~45 MB peak resident) unless something else loads them.

    Installed once, at start-up (startup.prepare_process): the finder stays for the process's
    life, so no thread ever sees the import system change under it.
    """
    if not any(isinstance(finder, _PyarrowNotForChdb) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PyarrowNotForChdb())


def _lock_path(path: str) -> int:
    """Hold an exclusive lock on the data path for this process's lifetime, or explain who has it."""
    try:
        make_dir(path)
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"The chDB data path {path} can't be used ({exc.strerror}). Fix its "
                          "permissions, or set OPTIINFRA_HOME or CLICKHOUSE_URL elsewhere.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreInUse(
            f"The chDB data path {path} is in use by another process (pid {holder}). Embedded "
            "mode is one process: chDB opens a data path in one process only. Stop that process, "
            "or set CLICKHOUSE_URL to a ClickHouse server (http://user:password@host:8123/db) "
            "to run several processes.", path, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _open_server(url: str, store_type: type[S]) -> S:
    parsed = urlparse(url)
    scheme = "http" if parsed.scheme == "clickhouse" else parsed.scheme
    try:
        _ = parsed.port  # raises on a port that is not a number
    except ValueError:
        raise ConfigError("CLICKHOUSE_URL has an invalid port. Use http(s)://host:8123/db.") from None
    database = unquote(parsed.path.strip("/")) or DEFAULT_DATABASE
    if not _DB_RE.match(database):
        raise ConfigError(f"CLICKHOUSE_URL names database {database!r}, which is not a plain "
                          "identifier: use letters, digits and '_'.")
    label = f"ClickHouse at {safe_url(urlunparse(parsed._replace(scheme=scheme, path='')))}"
    # Both spellings of the password: as typed in the URL and percent-decoded.
    secrets = tuple(filter(None, {parsed.password, unquote(parsed.password or "")}))
    # The database goes in every query instead of the DSN: it may not exist yet.
    dsn = urlunparse(parsed._replace(scheme=scheme, path=""))
    try:
        import clickhouse_connect

        _lists_not_dataframes()
        # No session: a session admits one query at a time, and threads share this client.
        client = clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False,
                                               connect_timeout=5, send_receive_timeout=120)
    except Exception as exc:
        mapped = _translate(exc, label, secrets)
        if mapped is None:
            raise ConfigError(f"{label}: {_scrub(str(exc), secrets)}") from None
        raise mapped from None
    store = store_type(client, database, label, secrets=secrets)
    try:
        store._init_schema()
    except BaseException:
        store._shutdown()
        raise
    return store


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """The first line of an error, without the password."""
    return first_line(scrub(text, secrets))


def _translate(exc: Exception, label: str, secrets: tuple[str, ...]) -> OptiInfraError | None:
    """The product's error for a driver error, or None to let it through (a bug of ours)."""
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    detail = _scrub(str(exc), secrets)
    if isinstance(exc, OperationalError):
        # urllib3 wraps the reason in three layers of repr: keep just the reason.
        reason = _ERRNO_RE.search(detail) or _TIMEOUT_RE.search(detail)
        return TransientError(f"{label} is unreachable ({reason[0] if reason else detail}). "
                              "Check that it is running and that CLICKHOUSE_URL points at it.")
    code = getattr(exc, "code", None)
    if isinstance(exc, DatabaseError) and code in _AUTH_CODES:
        return ConfigError(f"{label} refused the user or password in CLICKHOUSE_URL ({detail}). "
                           "Fix them there.")
    if isinstance(exc, DatabaseError) and code in _TRANSIENT_CODES:
        return TransientError(f"{label} is overloaded or unavailable ({detail}).")
    status = _HTTP_STATUS_RE.search(detail) if code is None else None
    if status and (status[1] == "429" or status[1] >= "500"):
        return TransientError(f"{label} is unavailable right now ({detail}).")
    if status:
        return ConfigError(f"{label} did not answer as ClickHouse does ({detail}). "
                           "Check the host, port and path in CLICKHOUSE_URL.")
    return None
