"""The history filter (`/`): status, provider, customer, free text."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from optiinfra_tui import providers
from optiinfra_tui.storage.history import STATUSES
from optiinfra_tui.tui.source import HistoryFilter


class FilterScreen(ModalScreen[HistoryFilter | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("enter", "apply", "Apply", priority=True),
        Binding("ctrl+r", "clear", "Clear filter"),
    ]

    def __init__(self, current: HistoryFilter) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        f = self.current
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Filter the history", classes="dialog-title")
            yield Label("Free text (customer, types, trigger, error)")
            yield Input(f.text or "", placeholder="e.g. API_KEY", id="text")
            yield Label("Status")
            yield Select([(s, s) for s in STATUSES], value=f.status or Select.NULL,
                         prompt="any status", id="status")
            yield Label("Provider")
            yield Select([(p, p) for p in providers.names()], value=f.provider or Select.NULL,
                         prompt="any provider", id="provider")
            yield Label("Customer")
            yield Input(f.customer_id or "", placeholder="any customer", id="customer")
            with Horizontal(classes="buttons"):
                yield Button("Apply (enter)", variant="primary", id="apply")
                yield Button("Clear (ctrl+r)", id="clear")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#text", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply" and any(s.expanded for s in self.query(Select)):
            return False
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"apply": self.action_apply, "clear": self.action_clear}.get(
            event.button.id or "", self.action_cancel)()

    def action_apply(self) -> None:
        def value(sel: str) -> str | None:
            v = self.query_one(sel, Select).value
            return v if isinstance(v, str) else None

        self.dismiss(HistoryFilter(
            status=value("#status"), provider=value("#provider"),
            customer_id=self.query_one("#customer", Input).value.strip() or None,
            text=self.query_one("#text", Input).value.strip() or None))

    def action_clear(self) -> None:
        self.dismiss(HistoryFilter())

    def action_cancel(self) -> None:
        self.dismiss(None)
