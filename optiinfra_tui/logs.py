"""Logging set-up: a file in the data dir always, stdout for headless mode, secrets scrubbed.

Huey logs a traceback per failed poll; those go to the file only, so a terminal (or the
dashboard) never fills with them.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from optiinfra_tui.datadir import create_file, make_dir
from optiinfra_tui.settings import Settings
from optiinfra_tui.text import scrub, short_error


class SecretFilter(logging.Filter):
    """Masks secrets in a record's message and traceback before any handler writes it."""

    def __init__(self, secrets: Callable[[], Sequence[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets()
        if not secrets:
            return True
        record.msg = scrub(record.getMessage(), secrets)
        record.args = None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), secrets)
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text or record.exc_info:
            doc["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(doc)


class OneLine(logging.Formatter):
    """A record without its traceback: a terminal gets what happened, never a stack."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = record.exc_text = None
        return super().format(record)


class QueueOutage(logging.Filter):
    """Turns Huey's traceback-per-poll during a queue outage into one line per change of state.

    Huey logs an exception on every failed poll of every worker; while the queue is down we
    keep the first as one line and drop the rest, and `recovered()` logs the way back.
    """

    PREFIXES = ("Error reading from queue", "Error reading schedule", "Error enqueueing")

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.suppressed = 0
        self._last: logging.LogRecord | None = None
        # Handlers call filters outside their own lock: workers failing together must still
        # produce one line.
        self._lock = threading.Lock()
        self.where, self.fix = "the queue", "Check the queue's settings."

    def describe(self, settings: Settings) -> None:
        """Name the queue (and its variable) in the outage line, for this process's settings."""
        self.where, self.fix = settings.queue_location()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._about_the_queue(record):
            return True
        with self._lock:
            if self.down:
                if record is not self._last:  # the same record passes every handler's filter
                    self.suppressed += 1
                    self._last = record
                return False
            self.down = True
        exc = record.exc_info[1] if record.exc_info else None
        detail = short_error(exc, 300) if exc else ""
        record.name = "optiinfra.queue"
        record.msg = (f"queue unreachable: {self.where} ({detail}). Workers keep retrying with "
                      f"back-off. {self.fix}")
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True

    def _about_the_queue(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("huey"):
            return False
        if str(record.msg).startswith(self.PREFIXES):
            return True
        # E.g. "Unhandled error during execution of task": its bookkeeping after the task.
        exc = record.exc_info[1] if record.exc_info else None
        return isinstance(exc, (RedisConnectionError, RedisTimeoutError))

    def recovered(self) -> None:
        with self._lock:
            if not self.down:
                return
            self.down = False
            suppressed, self.suppressed = self.suppressed, 0
        logging.getLogger("optiinfra.queue").warning(
            "queue reachable again: %s (%d repeated errors suppressed)", self.where, suppressed)


queue_outage = QueueOutage()

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _OwnLogsOnly(logging.Filter):
    """Stdout carries our own lines; huey's per-poll tracebacks stay in the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("optiinfra") or record.levelno >= logging.ERROR and not record.name.startswith("huey")


def setup_logging(settings: Settings, stdout: bool = False, fmt: str = "text",
                  level: int = logging.INFO, *, stderr: bool = False, file: bool = True) -> None:
    """Route every log record to the data dir's log file (unless `file` is False), and ours to
    stdout or stderr when asked. A CLI command logs to stderr only: the rotating file is the
    workers', and a second process rotating it would lose their lines."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(level)
    secret_filter = SecretFilter(settings.secrets)

    queue_outage.describe(settings)
    if file:
        make_dir(settings.home)
        create_file(settings.log_path)
        fileh = logging.handlers.RotatingFileHandler(settings.log_path, maxBytes=10_000_000,
                                                     backupCount=3, encoding="utf-8")
        fileh.setFormatter(logging.Formatter(TEXT_FORMAT))
        fileh.addFilter(queue_outage)
        fileh.addFilter(secret_filter)
        root.addHandler(fileh)

    if stdout or stderr:
        out = logging.StreamHandler(sys.stdout if stdout else sys.stderr)
        if stderr:  # beside a command's own output: warnings and errors, one line each
            out.setLevel(logging.WARNING)
        out.setFormatter(JsonFormatter() if fmt == "json" else
                         OneLine(TEXT_FORMAT) if stderr else logging.Formatter(TEXT_FORMAT))
        out.addFilter(queue_outage)
        out.addFilter(secret_filter)
        out.addFilter(_OwnLogsOnly())
        root.addHandler(out)

    # Libraries that are chatty at INFO (every request, every dequeue).
    # botocore at DEBUG would log request headers, session tokens among them.
    for name in ("httpx", "httpcore", "huey", "peewee", "urllib3", "clickhouse_connect",
                 "botocore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


def protect_existing_handlers(settings: Settings) -> None:
    """Add the secret filter to handlers someone else configured (huey_consumer's own)."""
    secret_filter = SecretFilter(settings.secrets)
    queue_outage.describe(settings)
    for name in (None, "huey", "huey.consumer"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, SecretFilter) for f in handler.filters):
                handler.addFilter(queue_outage)
                handler.addFilter(secret_filter)
