"""Workers panel: every worker thread of this process and of every consumer sharing the queue."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from optiinfra_tui.monitor import WorkerInfo
from optiinfra_tui.tui.fmt import STATE_STYLE

COLUMNS = (("where", "HOST:PID", 14), ("kind", "KIND", 8), ("thread", "THREAD", 8),
           ("state", "STATE", 5), ("task", "TASK", 12), ("since", "SINCE", 8),
           ("done", "DONE", 4), ("failed", "FAIL", 4))


class WorkersPanel(DataTable):
    """Rows are rebuilt only when a worker's shown state changes."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", show_cursor=False, **kwargs)
        self._rows: list[tuple] | None = None
        self.border_title = "Workers"
        self.border_subtitle = "connecting…"
        # Columns exist before mount: the first poll can arrive before on_mount runs.
        for key, label, width in COLUMNS:
            self.add_column(label, width=width, key=key)

    def show(self, workers: list[WorkerInfo]) -> None:
        rows = [worker_row(w) for w in workers]
        if rows == self._rows:
            return
        self._rows = rows
        with self.app.batch_update():
            self.clear()
            for row in rows:
                self.add_row(*row)
            if not rows:
                self.add_row(Text("no workers (--workers 0?)", style="dim"), *[""] * 7)
        busy = sum(w.state == "busy" for w in workers)
        self.border_subtitle = f"{len(workers)} threads, {busy} busy"


def worker_row(w: WorkerInfo) -> tuple:
    return (f"{w.host[:8]}:{w.pid}", w.kind, w.thread, Text(w.state, style=STATE_STYLE.get(w.state, "")),
            w.task or "-", f"{w.since:%H:%M:%S}", str(w.processed), str(w.failed))
