"""History panel: one window of runs, newest first, paged from the database by key.

The table never holds more than one window; moving past either end asks the app for the
next window, so 100,000 runs cost the same as 100.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from optiinfra_tui.tui.fmt import STATUS_STYLE, duration
from optiinfra_tui.tui.source import HistoryPage, RunRow

COLUMNS = (("id", "ID", 7), ("status", "STATUS", 8), ("provider", "PROVIDER", 8),
           ("customer", "CUSTOMER", 18), ("types", "TYPES", 16), ("trigger", "TRIGGER", 8),
           ("try", "TRY", 5), ("rows", "ROWS", 8), ("took", "TOOK", 8),
           ("queued", "QUEUED (UTC)", 14), ("error", "ERROR", 12))
KEYS = tuple(c[0] for c in COLUMNS)


def cells(r: RunRow) -> tuple:
    style = STATUS_STYLE.get(r.status, "")
    return (Text(str(r.id), justify="right"), Text(r.status, style=style), r.provider,
            r.customer_id[:18], r.data_types[:16], r.trigger, f"{r.attempt}/{r.max_attempts}",
            Text(f"{r.rows:,}", justify="right"), Text(duration(r.duration_ms), justify="right"),
            f"{r.queued_at:%m-%d %H:%M:%S}",
            Text(r.error_kind or "", style="#ff5f5f" if r.status == "failed" else "#ffaf00"))


class HistoryTable(DataTable):
    BINDINGS = [
        Binding("enter", "select_cursor", "Detail"),
        Binding("home", "first_row", "First row", show=False),
        Binding("end", "last_row", "Last row", show=False),
        Binding("ctrl+home", "scroll_top", "Newest", show=False),
    ]

    class PageRequest(Message):
        """Show another window: 'older', 'newer' or 'newest'."""

        def __init__(self, direction: str) -> None:
            super().__init__()
            self.direction = direction

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.page: HistoryPage | None = None
        self.border_title = "History"
        self.border_subtitle = "connecting…"
        # Columns exist before mount: the first page can arrive before on_mount runs.
        for key, label, width in COLUMNS:
            self.add_column(label, width=width, key=key)

    @property
    def selected(self) -> RunRow | None:
        if self.page is None or not self.page.rows:
            return None
        row = self.cursor_row
        return self.page.rows[row] if 0 <= row < len(self.page.rows) else None

    def show(self, page: HistoryPage, cursor: str = "keep") -> bool:
        """Show a window; 'keep' holds the cursor on the same run. False when nothing changed."""
        old = self.page
        self.page = page
        if old is not None and old.rows == page.rows and cursor == "keep":
            return False
        keep = old.rows[self.cursor_row].id if old and 0 <= self.cursor_row < len(old.rows) else None
        if old is not None and [r.id for r in old.rows] == [r.id for r in page.rows]:
            self._update_changed(old.rows, page.rows)
        else:
            with self.app.batch_update():
                self.clear()
                self.add_rows([cells(r) for r in page.rows])
                # add_rows gives no keys; rows are addressed by index through self.page.
        self._place_cursor(page, cursor, keep)
        return True

    def _update_changed(self, old: tuple[RunRow, ...], new: tuple[RunRow, ...]) -> None:
        keys = list(self.rows)
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                for col, value in zip(KEYS, cells(b), strict=True):
                    self.update_cell(keys[i], col, value)

    def _place_cursor(self, page: HistoryPage, cursor: str, keep: int | None) -> None:
        n = len(page.rows)
        if not n:
            return
        if cursor == "top":
            self.move_cursor(row=0, animate=False)
        elif cursor == "bottom":
            self.move_cursor(row=n - 1, animate=False)
        else:
            ids = [r.id for r in page.rows]
            row = ids.index(keep) if keep in ids else min(self.cursor_row, n - 1)
            if row != self.cursor_row:
                self.move_cursor(row=row, animate=False)

    def _at_end(self) -> bool:
        return self.page is not None and self.cursor_row >= len(self.page.rows) - 1

    def _at_start(self) -> bool:
        return self.cursor_row <= 0

    def action_cursor_down(self) -> None:
        if self._at_end() and self.page.has_more:
            self.post_message(self.PageRequest("older"))
        else:
            super().action_cursor_down()

    def action_page_down(self) -> None:
        if self._at_end() and self.page.has_more:
            self.post_message(self.PageRequest("older"))
        else:
            super().action_page_down()

    def action_cursor_up(self) -> None:
        if self._at_start() and self.page is not None and self.page.query.page > 0:
            self.post_message(self.PageRequest("newer"))
        else:
            super().action_cursor_up()

    def action_page_up(self) -> None:
        if self._at_start() and self.page is not None and self.page.query.page > 0:
            self.post_message(self.PageRequest("newer"))
        else:
            super().action_page_up()

    def action_first_row(self) -> None:
        self.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        self.move_cursor(row=max(0, self.row_count - 1), animate=False)

    def action_scroll_top(self) -> None:
        if self.page is not None and self.page.query.page > 0:
            self.post_message(self.PageRequest("newest"))
        super().action_scroll_top()
