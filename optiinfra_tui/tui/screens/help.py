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
from optiinfra_tui.tui.keys import help_lines
from optiinfra_tui.tui.palette import palette
from optiinfra_tui.tui.widgets.history import DROP_ORDER, LABELS


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Static(render_help(self.settings))

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(
            self, lambda _: self.query_one(Static).update(render_help(self.settings)))

    def action_close(self) -> None:
        self.dismiss(None)


def history_columns_note() -> str:
    """How the history table fits a narrow terminal, from the table's own drop order."""
    order = ", ".join(LABELS[key] for key in DROP_ORDER)
    return (f"narrow terminals drop whole columns, first to last: {order}. A value cut short "
            "ends in …; enter shows all of a run.")


def render_help(s: Settings) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style=f"bold {palette().info}", no_wrap=True)
    table.add_column()
    table.add_row(Text("OptiInfra TUI", style="bold"), "")
    for key, what in help_lines():
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
