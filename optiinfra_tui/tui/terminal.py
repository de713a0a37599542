"""Keep the terminal for the dashboard alone: stray C-level writes go to the log file.

Python-level output is already captured (logging goes to the file, Textual captures print),
but a native library writing to fd 1 or 2 would tear the screen. Textual draws through
`sys.__stderr__`, so it gets a private duplicate of the terminal while fds 1 and 2 point
at the log file; and its driver takes the terminal's size from that duplicate too (`use_tty_size`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("optiinfra.tui")


@contextmanager
def quiet_terminal(log_path: Path) -> Iterator[None]:
    if not (sys.__stderr__ and sys.__stderr__.isatty()):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    tty = os.fdopen(os.dup(2), "w", encoding=sys.__stderr__.encoding or "utf-8",
                    errors="replace")
    old_dunder, old_stdout, old_stderr = sys.__stderr__, sys.stdout, sys.stderr
    old_hook = threading.excepthook
    sys.__stderr__ = tty
    threading.excepthook = _log_thread_exception
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        yield
    finally:
        try:
            tty.flush()
        except OSError:  # the terminal is gone (ssh dropped, tmux killed): nothing to restore
            pass
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(log_fd)
        sys.__stderr__, sys.stdout, sys.stderr = old_dunder, old_stdout, old_stderr
        threading.excepthook = old_hook
        try:
            tty.close()  # flushes again: the same error when the terminal is gone
        except OSError:
            pass


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    log.error("uncaught exception in thread %s", args.thread.name if args.thread else "?",
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def use_tty_size(app: Any) -> None:
    """Make `app` size itself, at start and on every SIGWINCH, by the terminal it draws on.

    Textual's Linux driver asks shutil.get_terminal_size(): COLUMNS/LINES when exported
    (a parent with readline exports them, and bash then keeps them at the size of its last
    prompt), else fd 1, which points at the log file here. Either way resizes never arrive.
    """
    if sys.platform == "win32":
        return
    from textual.drivers.linux_driver import LinuxDriver

    class TtyDriver(LinuxDriver):
        def _get_terminal_size(self) -> tuple[int, int]:
            try:
                size = os.get_terminal_size(self._file.fileno())
            except (AttributeError, ValueError, OSError):  # not a terminal: Textual's guess
                return super()._get_terminal_size()
            return size.columns or 80, size.lines or 25

    if app.driver_class is LinuxDriver:
        app.driver_class = TtyDriver
