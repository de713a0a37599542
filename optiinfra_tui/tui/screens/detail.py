"""Run detail (`enter`): every attempt, the error and what to do about it, rows, timings."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from optiinfra_tui.formats import attempts_label, clip, duration, error_text, types_label
from optiinfra_tui.storage.history import close_connection
from optiinfra_tui.tui.fmt import ERROR_ADVICE
from optiinfra_tui.tui.palette import palette, status_style
from optiinfra_tui.tui.source import RunDetail
from optiinfra_tui.worker.actions import can_retry, can_revoke

ATTEMPT_COLUMNS = (("#", 3), ("STATUS", 9), ("WORKER", 30), ("STARTED (UTC)", 19),
                   ("FINISHED (UTC)", 19), ("TOOK", 8), ("ROWS", 8), ("ERROR", 40))


class RunDetailScreen(Screen):
    BINDINGS = [
        Binding("escape,q", "close", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("x", "revoke", "Revoke"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.detail: RunDetail | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static(f"Run {self.run_id}", id="detail-title")
            yield Static("loading...", id="detail-fields")
            yield Static("", id="detail-error")
            yield DataTable(id="attempts", cursor_type="none", show_cursor=False)
            yield Static("", id="detail-retries")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#attempts", DataTable)
        table.border_title = "Attempts"
        for label, width in ATTEMPT_COLUMNS:
            table.add_column(label, width=width)
        self.load()
        self.app.theme_changed_signal.subscribe(self, self._redraw)
        # A run still in progress is re-read while it is on screen.
        self.set_interval(1.0, self._reload_if_live)

    def _redraw(self, _theme: object) -> None:
        if self.detail is not None:
            self.show(self.detail)

    def _reload_if_live(self) -> None:
        run = self.detail.run if self.detail else None
        if run is not None and not run.is_final:
            self.load()

    @work(thread=True, exclusive=True, group="detail")
    def load(self) -> None:
        try:
            detail = self.app.source.detail(self.run_id)
        finally:
            close_connection()  # a short-lived thread: don't leak it
        self.app.call_from_thread(self.show, detail)

    def show(self, d: RunDetail) -> None:
        self.detail = d
        self.refresh_bindings()
        if d.run is None:
            self.query_one("#detail-fields", Static).update(
                Text(d.error or f"Run {self.run_id} is gone.", style=f"bold {palette().error}"))
            return
        run = d.run
        title = Text(f"Run {run.id}  ")
        title.append(f" {run.status} ", style=f"reverse {status_style(run.status)}")
        title.append(f"  {run.provider} / {run.customer_id}  "
                     f"[{types_label(run.provider, run.data_types)}]")
        self.query_one("#detail-title", Static).update(title)
        self.query_one("#detail-fields", Static).update(fields(run))
        self.query_one("#detail-error", Static).update(error_box(run))
        table = self.query_one("#attempts", DataTable)
        table.clear()
        widths = dict(ATTEMPT_COLUMNS)
        for a in d.attempts:
            # The error box above has the whole message; the table names each attempt's.
            table.add_row(str(a.attempt), Text(a.status, style=status_style(a.status)),
                          clip(a.worker or "-", widths["WORKER"]), _ts(a.started_at),
                          _ts(a.finished_at), duration(a.duration_ms), f"{a.rows:,}",
                          Text(clip(error_text(a.error_kind, a.error_message), widths["ERROR"],
                                    words=True), style=palette().error))
        if not d.attempts:
            table.add_row("-", "-", Text("no attempt yet", style="dim"), *[""] * 5)
        retries = Text()
        if run.retry_of:
            retries.append(f"This run retries run {run.retry_of}.\n", style="dim")
        for r in d.retries:
            retries.append(f"Retried as run {r.id}: ", style="dim")
            retries.append(r.status, style=status_style(r.status))
            retries.append("\n")
        self.query_one("#detail-retries", Static).update(retries)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        run = self.detail.run if self.detail else None
        if action == "retry":
            return True if can_retry(run) else None
        if action == "revoke":
            return True if can_revoke(run) else None
        return True

    def action_close(self) -> None:
        self.dismiss()

    def action_retry(self) -> None:
        self.app.retry_run(self.run_id)

    def action_revoke(self) -> None:
        self.app.revoke_run(self.run_id)
        self.set_timer(0.3, self.load)


def _ts(value) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"


def fields(run) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim", no_wrap=True)
    t.add_column()
    t.add_column(style="dim", no_wrap=True)
    t.add_column()
    rows = [
        ("trigger", run.trigger, "task id", run.task_id or "-"),
        ("attempts", attempts_text(run), "worker", run.worker or "-"),
        ("rows written", f"{run.metrics_collected:,}", "duration", duration(run.duration_ms)),
        ("queued", _ts(run.queued_at), "started", _ts(run.started_at)),
        ("finished", _ts(run.finished_at), "next attempt", _ts(run.next_attempt_at)),
        ("schedule", run.schedule or "-", "retry of", str(run.retry_of or "-")),
        ("requests", f"{run.requests:,}", "", ""),
    ]
    for row in rows:
        t.add_row(*row)
    return t


def attempts_text(run) -> str:
    """'2 of 4' while more may come; a final run says why no more will."""
    label = attempts_label(run.status, run.attempt, run.max_attempts)
    if run.status == "failed" and run.attempt < run.max_attempts:
        return f"{label} (final: {run.error_kind or 'this'} errors are not retried)"
    if run.status == "failed":
        return f"{label} (every attempt allowed was used)"
    return label if run.is_final else f"{run.attempt} of {run.max_attempts}"


def error_box(run) -> Text:
    if not run.error_kind:
        return Text("")
    t = Text()
    t.append(f"Error ({run.error_kind})\n", style=f"bold {palette().error}")
    t.append(f"{run.error_message or ''}\n")
    advice = ERROR_ADVICE.get(run.error_kind)
    if advice:
        t.append("What to do: ", style="bold")
        t.append(advice)
    return t
