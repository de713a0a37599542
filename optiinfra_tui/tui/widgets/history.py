"""History panel: one window of runs, newest first, paged from the database by key.

The table never holds more than one window; moving past either end asks the app for the
next window, so 100,000 runs cost the same as 100. Columns have fixed widths, fitted to the
panel on every resize: narrow panels drop whole columns (DROP_ORDER) and the error takes the
width left; a cut cell ends in `…`, and the run detail (`enter`) shows everything.

Each run is one DataTable cell holding the whole line, laid out in those columns: DataTable
measures and draws cell by cell, so a new window of 100 runs costs 100 cells, not 1,100.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from optiinfra_tui.formats import attempts_label, clip, duration, error_text, types_label
from optiinfra_tui.tui.fmt import fit_columns
from optiinfra_tui.tui.palette import palette, status_style
from optiinfra_tui.tui.source import HistoryPage, RunRow

# (key, label, width); the error column's is its narrowest: it takes the width left.
COLUMNS = (("id", "ID", 7), ("status", "STATUS", 8), ("provider", "PROVIDER", 8),
           ("customer", "CUSTOMER", 16), ("types", "TYPES", 21), ("trigger", "TRIGGER", 8),
           ("try", "TRY", 5), ("rows", "ROWS", 8), ("took", "TOOK", 8),
           ("queued", "QUEUED (UTC)", 14), ("error", "ERROR", 24))
# Columns a narrow panel drops, first to last; ID, STATUS and ERROR always stay.
DROP_ORDER = ("trigger", "try", "took", "provider", "rows", "types", "customer", "queued")
LABELS = {key: label for key, label, _ in COLUMNS}
RUN = "run"  # the table's one column: a run's whole line
WIDE = 176  # the width assumed until the panel is laid out


def layout_for(width: int) -> tuple[tuple[str, str, int], ...]:
    """The columns shown in a panel `width` cells wide, with their widths."""
    return fit_columns(COLUMNS, width, "error", DROP_ORDER)



def cells(r: RunRow, layout: tuple[tuple[str, str, int], ...]) -> tuple[Text, ...]:
    """The row's cells for the shown columns, each cut to its width with `…`."""
    p = palette()
    values = {
        "id": lambda w: Text(clip(str(r.id), w), justify="right"),
        "status": lambda w: Text(clip(r.status, w), style=status_style(r.status)),
        "provider": lambda w: Text(clip(r.provider, w)),
        "customer": lambda w: Text(clip(r.customer_id, w)),
        "types": lambda w: Text(clip(types_label(r.provider, r.data_types), w)),
        "trigger": lambda w: Text(clip(r.trigger, w)),
        "try": lambda w: Text(clip(attempts_label(r.status, r.attempt, r.max_attempts), w)),
        "rows": lambda w: Text(clip(f"{r.rows:,}", w), justify="right"),
        "took": lambda w: Text(clip(duration(r.duration_ms), w), justify="right"),
        "queued": lambda w: Text(clip(f"{r.queued_at:%m-%d %H:%M:%S}", w)),
        "error": lambda w: Text(clip(error_text(r.error_kind, r.error_message), w, words=True),
                                style=p.error if r.status == "failed" else p.warning),
    }
    return tuple(values[key](width) for key, _, width in layout)


def line(parts: tuple[Text, ...], layout: tuple[tuple[str, str, int], ...]) -> Text:
    """Cells side by side in their columns, one cell of padding each side (as DataTable's)."""
    out = Text(end="", no_wrap=True)
    for part, (_, _, width) in zip(parts, layout, strict=True):
        pad = width - part.cell_len
        left = pad if part.justify == "right" else 0
        out.append(" " * (left + 1))
        out.append_text(part)
        out.append(" " * (pad - left + 1))
    return out


def row_line(r: RunRow, layout: tuple[tuple[str, str, int], ...]) -> Text:
    """The run's line in the table."""
    return line(cells(r, layout), layout)


def header(layout: tuple[tuple[str, str, int], ...]) -> Text:
    return line(tuple(Text(label) for _, label, _ in layout), layout)


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
        super().__init__(cursor_type="row", cell_padding=0, **kwargs)
        self.page: HistoryPage | None = None
        self.filter_text = ""
        self.border_subtitle = "connecting…"
        # The column exists before mount: the first page can arrive before on_mount runs.
        self.fitted = layout_for(WIDE)
        self._add_column()
        self._retitle()

    def _add_column(self) -> None:
        title = header(self.fitted)
        self.add_column(title, width=title.cell_len, key=RUN)

    @property
    def hidden(self) -> tuple[str, ...]:
        """Labels of the columns this width leaves out."""
        shown = {key for key, _, _ in self.fitted}
        return tuple(LABELS[key] for key in DROP_ORDER if key not in shown)

    def set_filter_text(self, text: str) -> None:
        self.filter_text = text
        self._retitle()

    def _retitle(self) -> None:
        title = "History"
        if self.filter_text:
            title += f" · filter: {self.filter_text}"
        if self.hidden:
            title += f" · {len(self.hidden)} columns hidden, enter: all of a run"
        self.border_title = title

    def on_resize(self, event: events.Resize) -> None:
        layout = layout_for(self.scrollable_content_region.width)
        if layout == self.fitted:
            return
        self.fitted = layout
        self.redraw()
        self._retitle()

    def redraw(self) -> None:
        """Rebuild the rows at the fitted widths, in the current palette; the cursor stays."""
        keep = self.cursor_row
        with self.app.batch_update():
            self.clear(columns=True)
            self._add_column()
            if self.page is not None:
                self.add_rows([(row_line(r, self.fitted),) for r in self.page.rows])
                if self.page.rows:
                    self.move_cursor(row=min(keep, len(self.page.rows) - 1), animate=False)

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
                self.add_rows([(row_line(r, self.fitted),) for r in page.rows])
                # add_rows gives no keys; rows are addressed by index through self.page.
        self._place_cursor(page, cursor, keep)
        return True

    def _update_changed(self, old: tuple[RunRow, ...], new: tuple[RunRow, ...]) -> None:
        keys = list(self.rows)
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                self.update_cell(keys[i], RUN, row_line(b, self.fitted))

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
