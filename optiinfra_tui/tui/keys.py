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
    footer: str  # its footer label; "" means no binding on the main screen
    palette: str  # its title in the command palette; "" keeps it out
    help: str  # its line on the help screen; "" keeps it off the help screen
    palette_help: str


# enter is the history table's own (row selected): help and palette only, as is tab.
KEYS = (
    Key("c", "c", "collect", "Collect", "Collect…",
        "collect: choose provider, customer and data types (enter: defaults)",
        "Start a collection: provider, customer, data types"),
    Key("a", "a", "collect_all", "All now", "Collect everything now",
        "collect everything configured, now",
        "Queue every configured schedule's collection"),
    Key("h", "h", "health", "Health", "Health check",
        "health check of every backend and provider",
        "Check every backend and provider"),
    Key("enter", "enter", "detail", "", "Run detail",
        "detail of the selected run: attempts, error, what to do",
        "Attempts, error and timings of the selected run"),
    Key("r", "r", "retry", "Retry", "Retry selected run",
        "retry the selected failed run (a new run linked to it)",
        "A new run for the selected failed run"),
    Key("x", "x", "revoke", "Revoke", "Revoke selected run",
        "revoke the selected queued run",
        "Cancel the selected queued run"),
    Key("slash", "/", "filter", "Filter", "Filter history…",
        "filter the history: status, provider, customer, text",
        "By status, provider, customer, text"),
    Key("p", "p", "pause", "Pause/resume", "Pause or resume schedules",
        "pause or resume every schedule",
        "Toggle every schedule"),
    Key("", "", "costs", "", "Costs view",
        "",
        "Spend by day and provider, month to date, pending estimate"),
    Key("tab", "tab", "", "", "",
        "move between panels (enter on Costs: the costs view)",
        ""),
    Key("ctrl+p", "ctrl+p", "", "", "",
        "command palette: every action",
        ""),
    Key("question_mark", "?", "help", "Help", "Help",
        "this help",
        "Keys, and where the log file is"),
    Key("q", "q", "app.quit", "Quit", "",
        "quit (waits for tasks in flight, bounded)",
        ""),
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
