"""Inserts of many runs merged into one: a chDB insert costs ~10 ms of its single connection
however few rows it holds, so 10,000 small collections would spend most of a slot there.

Each caller hands its rows (as columns) to the store's coalescer and waits; one thread inserts
everything that gathered for a table as a single insert, as soon as the previous one returns.
An idle store inserts at once; a busy one merges the rows of every run waiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Insert = Callable[[str, list[list]], int]


class _Waiter:
    __slots__ = ("columns", "done", "error", "table")

    def __init__(self, table: str, columns: list[list]) -> None:
        self.table, self.columns = table, columns
        self.done = threading.Event()
        self.error: BaseException | None = None


class Coalescer:
    """Merges concurrent inserts per table; `insert(table, columns)` is what stores them."""

    def __init__(self, insert: Insert, name: str = "metrics-coalescer") -> None:
        self._insert = insert
        self._name = name
        self._cond = threading.Condition()
        self._pending: list[_Waiter] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def insert(self, table: str, columns: list[list]) -> int:
        """Store these rows (with any others waiting); returns how many; raises what the
        insert that held them raised."""
        n = len(columns[0]) if columns else 0
        if not n:
            return 0
        waiter = _Waiter(table, columns)
        with self._cond:
            if self._closed:
                raise RuntimeError("the metrics store is closed")
            self._pending.append(waiter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return n

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            by_table: dict[str, list[_Waiter]] = {}
            for waiter in batch:
                by_table.setdefault(waiter.table, []).append(waiter)
            for table, waiters in by_table.items():
                merged = waiters[0].columns
                if len(waiters) > 1:
                    merged = [list(col) for col in merged]
                    for waiter in waiters[1:]:
                        for into, col in zip(merged, waiter.columns, strict=True):
                            into.extend(col)
                try:
                    self._insert(table, merged)
                except Exception as exc:  # every run whose rows it held hears of it
                    for waiter in waiters:
                        waiter.error = exc
                for waiter in waiters:
                    waiter.done.set()
