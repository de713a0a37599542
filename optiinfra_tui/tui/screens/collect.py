"""The collect modal (`c`): provider, customer, data types, every installed provider's (from
their specs); enter with the defaults starts a collection of the first provider the default
customer can collect from now, its default types."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select, SelectionList, Static

from optiinfra_tui import providers
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import Settings, validate_data_types


@dataclass(frozen=True)
class CollectRequest:
    provider: str
    customer_id: str
    data_types: tuple[str, ...]


class CollectScreen(ModalScreen[CollectRequest | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        # Priority, so enter starts the collection from any field (space toggles a type).
        Binding("enter", "submit", "Start", priority=True),
    ]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        provider = self._first_provider()
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Start a collection", classes="dialog-title")
            yield Label("Provider")
            yield Select([(f"{s.title} ({s.name})", s.name) for s in providers.specs().values()],
                         value=provider, allow_blank=False,
                         id="provider")
            yield Label("Customer")
            yield Select(self._customers(provider), value=self.settings.default_customer_id,
                         allow_blank=False, id="customer")
            yield Label("Data types (space toggles)")
            yield SelectionList[str](*self._types(provider), id="types")
            yield Static("", id="collect-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Start (enter)", variant="primary", id="start")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        types = self.query_one("#types", SelectionList)
        types.focus()
        self.call_after_refresh(setattr, types, "highlighted", 0)  # show where space acts

    def _first_provider(self) -> str:
        """The first provider the default customer has its credentials for, else the first it
        has, else the first installed."""
        s = self.settings
        have = s.customer(s.default_customer_id).providers
        ready = [p for p in have if not s.missing_credential(s.default_customer_id, p)]
        return min(ready or have or providers.names())

    def _customers(self, provider: str) -> list[tuple[str, str]]:
        ids = [c.id for c in self.settings.customers_with(provider)]
        ids = ids or [self.settings.default_customer_id]
        return [(c, c) for c in ids]

    def _types(self, provider: str) -> list[tuple[str, str, bool]]:
        spec = providers.spec(provider)
        return [(t, t, t in spec.default_types) for t in spec.data_types]

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "provider" and isinstance(event.value, str):
            types = self.query_one("#types", SelectionList)
            types.clear_options()
            types.add_options(self._types(event.value))
            customer = self.query_one("#customer", Select)
            choices = self._customers(event.value)
            current = customer.value
            customer.set_options(choices)
            ids = [c for c, _ in choices]
            customer.value = current if current in ids else ids[0]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # An open drop-down keeps enter for choosing its option.
        if action == "submit" and any(s.expanded for s in self.query(Select)):
            return False
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        provider = str(self.query_one("#provider", Select).value)
        customer = str(self.query_one("#customer", Select).value)
        chosen = list(self.query_one("#types", SelectionList).selected)
        if not chosen:
            self.query_one("#collect-error", Static).update("Choose at least one data type.")
            return
        try:
            types = validate_data_types(provider, chosen)
        except ConfigError as exc:
            self.query_one("#collect-error", Static).update(str(exc))
            return
        self.dismiss(CollectRequest(provider, customer, types))

    def action_cancel(self) -> None:
        self.dismiss(None)
