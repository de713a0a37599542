"""Every key and palette command of the dashboard, written once, in the order help lists them:
the main screen's bindings, the help screen and the command palette all read KEYS."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    key: str  # textual's name of the key ("slash"); "" for a palette-only command
    display: str  # how help and the palette show it ("/")
    action: str  # the main screen's action ("" when the key belongs to another widget)
    help: str  # its line on the help screen ("" keeps it off the help screen)
    footer: str = ""  # its footer label; "" means no binding on the main screen
    palette: str = ""  # its title in the command palette; "" keeps it out
    palette_help: str = ""


KEYS = (
    Key("c", "c", "collect", "collect: choose provider, customer and data types (enter: defaults)",
        "Collect", "Collect…", "Start a collection: provider, customer, data types"),
    Key("a", "a", "collect_all", "collect everything configured, now",
        "All now", "Collect everything now", "Queue every configured schedule's collection"),
    Key("h", "h", "health", "health check of every backend and provider",
        "Health", "Health check", "Check every backend and provider"),
    # enter is the history table's own (row selected): help and palette only.
    Key("enter", "enter", "detail", "detail of the selected run: attempts, error, what to do",
        "", "Run detail", "Attempts, error and timings of the selected run"),
    Key("r", "r", "retry", "retry the selected failed run (a new run linked to it)",
        "Retry", "Retry selected run", "A new run for the selected failed run"),
    Key("x", "x", "revoke", "revoke the selected queued run",
        "Revoke", "Revoke selected run", "Cancel the selected queued run"),
    Key("slash", "/", "filter", "filter the history: status, provider, customer, text",
        "Filter", "Filter history…", "By status, provider, customer, text"),
    Key("p", "p", "pause", "pause or resume every schedule",
        "Pause/resume", "Pause or resume schedules", "Toggle every schedule"),
    Key("", "", "costs", "", "", "Costs view",
        "Spend by day and provider, month to date, pending estimate"),
    Key("tab", "tab", "", "move between panels (enter on Costs: the costs view)"),
    Key("ctrl+p", "ctrl+p", "", "command palette: every action"),
    Key("question_mark", "?", "help", "this help",
        "Help", "Help", "Keys, and where the log file is"),
    Key("q", "q", "app.quit", "quit (waits for tasks in flight, bounded)", "Quit"),
)

def bindings() -> list[Binding]:
    """The main screen's bindings (in footer order)."""
    return [Binding(k.key, k.action, k.footer,
                    key_display=k.display if k.display != k.key else None)
            for k in KEYS if k.footer]


def help_lines() -> list[tuple[str, str]]:
    """(key, what it does) for the help screen."""
    return [(k.display, k.help) for k in KEYS if k.help]


def palette() -> list[tuple[str, str, str]]:
    """(title, help, action) for the command palette; the help names the key, if any."""
    return [(k.palette, f"{k.palette_help} ({k.display})" if k.display else k.palette_help,
             k.action) for k in KEYS if k.palette]
