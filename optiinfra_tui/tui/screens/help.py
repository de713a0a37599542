"""Help (`?`): the keys, and where the log file and the data live."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from optiinfra_tui.settings import Settings
from optiinfra_tui.text import safe_url
from optiinfra_tui.tui.widgets.history import DROP_ORDER, LABELS

KEYS = (
    ("c", "collect: choose provider, customer and data types (enter: defaults)"),
    ("a", "collect everything configured, now"),
    ("h", "health check of every backend and provider"),
    ("enter", "detail of the selected run: attempts, error, what to do"),
    ("r", "retry the selected failed run (a new run linked to it)"),
    ("x", "revoke the selected queued run"),
    ("/", "filter the history: status, provider, customer, text"),
    ("p", "pause or resume every schedule"),
    ("tab", "move between panels (enter on Costs: the costs view)"),
    ("ctrl+p", "command palette: every action"),
    ("?", "this help"),
    ("q", "quit (waits for tasks in flight, bounded)"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static(render_help(self.settings))

    def action_close(self) -> None:
        self.dismiss(None)


def history_columns_note() -> str:
    """How the history table fits a narrow terminal, from the table's own drop order."""
    order = ", ".join(LABELS[key] for key in DROP_ORDER)
    return (f"narrow terminals drop whole columns, first to last: {order}. A value cut short "
            "ends in …; enter shows all of a run.")


def render_help(s: Settings) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold #5fafff", no_wrap=True)
    table.add_column()
    table.add_row(Text("OptiInfra TUI", style="bold"), "")
    for key, what in KEYS:
        table.add_row(key, what)
    table.add_row("", "")
    table.add_row(Text("History", style="bold"), history_columns_note())
    table.add_row(Text("Log file", style="bold"), str(s.log_path))
    table.add_row("", Text("Everything the dashboard and its workers log goes there, "
                           "never to the terminal.", style="dim"))
    table.add_row(Text("Data dir", style="bold"), str(s.home))
    table.add_row(Text("History", style="bold"), safe_url(s.database_url))
    table.add_row(Text("Config", style="bold"), str(s.config_path or "(none: OPTIINFRA_CONFIG unset)"))
    table.add_row(Text("Mode", style="bold"), s.mode)
    table.add_row("", "")
    table.add_row("", Text("esc, q or ? closes this help", style="dim"))
    return table
