"""Workers panel: every worker thread of this process and of every consumer sharing the queue.

Columns have fixed widths fitted to the panel on resize: the task takes the width left, a
narrow panel drops whole columns (DROP_ORDER), and a cut cell ends in `…`.
"""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from optiinfra_tui.formats import clip
from optiinfra_tui.tui.fmt import fit_columns
from optiinfra_tui.tui.palette import state_style
from optiinfra_tui.worker.monitor import WorkerInfo

# (key, label, width); the task column's is its narrowest: it takes the width left.
COLUMNS = (("where", "HOST:PID", 14), ("kind", "KIND", 9), ("thread", "THREAD", 9),
           ("state", "STATE", 5), ("task", "TASK", 12), ("since", "SINCE", 8),
           ("done", "DONE", 4), ("failed", "FAIL", 4))
DROP_ORDER = ("failed", "done", "since", "kind", "thread")
WIDE = 100  # the width assumed until the panel is laid out
# A consumer with more threads than this shows its busy ones and one row for the idle rest:
# 64 rows of "idle -" would hide the few that say something.
MANY_THREADS = 4


class WorkersPanel(DataTable):
    """Rows are rebuilt only when a worker's shown state (or the panel's width) changes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", show_cursor=False, **kwargs)
        self._workers: list[WorkerInfo] = []
        self._rows: list[tuple] | None = None
        self.border_title = "Workers"
        self.border_subtitle = "connecting…"
        # Columns exist before mount: the first poll can arrive before on_mount runs.
        self.fitted = fit_columns(COLUMNS, WIDE, "task", DROP_ORDER)
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label, width in self.fitted:
            self.add_column(label, width=width, key=key)

    def on_resize(self, event: events.Resize) -> None:
        fitted = fit_columns(COLUMNS, self.scrollable_content_region.width, "task", DROP_ORDER)
        if fitted != self.fitted:
            self.fitted = fitted
            self.clear(columns=True)
            self._add_columns()
            self._rows = None
            self.show(self._workers)

    def redraw(self) -> None:
        """Draw again in the current palette: the rows hold the last theme's colours."""
        if self._rows is not None:  # else nothing shown yet: still connecting
            self._rows = None
            self.show(self._workers)

    def show(self, workers: list[WorkerInfo]) -> None:
        self._workers = workers
        rows = [worker_row(w, self.fitted) for w in shown(workers)]
        if rows == self._rows:
            return
        self._rows = rows
        with self.app.batch_update():
            self.clear()
            for row in rows:
                self.add_row(*row)
            if not rows:
                hint = {"where": "no workers", "task": "--workers 0?"}
                self.add_row(*(Text(clip(hint.get(key, ""), width), style="dim")
                               for key, _, width in self.fitted))
        busy = sum(w.state == "busy" for w in workers)
        self.border_subtitle = f"{len(workers)} threads, {busy} busy"


def shown(workers: list[WorkerInfo]) -> list[WorkerInfo]:
    """The rows to show: every thread of a small consumer; of one with many threads, the busy
    ones (longest busy first) and one row counting the idle ones."""
    out: list[WorkerInfo] = []
    by_consumer: dict[str, list[WorkerInfo]] = {}
    for w in workers:
        by_consumer.setdefault(w.consumer_id, []).append(w)
    for threads in by_consumer.values():
        if len(threads) <= MANY_THREADS:
            out += threads
            continue
        idle = [w for w in threads if w.state != "busy"]
        out += sorted((w for w in threads if w.state == "busy"), key=lambda w: w.since)
        if len(idle) == 1:
            out += idle
        elif idle:
            out.append(replace(idle[0], thread=f"{len(idle)} idle", task=f"{len(idle)} idle threads",
                               since=max(w.since for w in idle),
                               processed=sum(w.processed for w in idle),
                               failed=sum(w.failed for w in idle)))
    return out


def worker_row(w: WorkerInfo, fitted: tuple[tuple[str, str, int], ...]) -> tuple:
    """The worker's cells for the shown columns, each cut to its width with `…`."""
    pid = f":{w.pid}"
    values = {
        "where": lambda n: clip(w.host, max(1, n - len(pid))) + pid,
        "kind": lambda n: clip(w.kind, n),
        "thread": lambda n: clip(w.thread, n),
        "state": lambda n: Text(clip(w.state, n), style=state_style(w.state)),
        "task": lambda n: clip(w.task or "-", n),
        "since": lambda n: f"{w.since:%H:%M:%S}",
        "done": lambda n: clip(str(w.processed), n),
        "failed": lambda n: clip(str(w.failed), n),
    }
    return tuple(values[key](width) for key, _, width in fitted)
