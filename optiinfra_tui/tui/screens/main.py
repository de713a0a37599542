"""The dashboard's main screen: the panels and the keys that act on the system."""

from __future__ import annotations

from dataclasses import replace

from textual import events
from textual.app import ComposeResult
from textual.binding import ActiveBinding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from optiinfra_tui.tui.keys import bindings
from optiinfra_tui.tui.source import CostsData, HistoryPage, RunRow
from optiinfra_tui.tui.widgets.costs import CostsPanel
from optiinfra_tui.tui.widgets.header import HealthHeader
from optiinfra_tui.tui.widgets.history import HistoryTable
from optiinfra_tui.tui.widgets.queue import QueuePanel
from optiinfra_tui.tui.widgets.stats import StatsStrip
from optiinfra_tui.tui.widgets.workers import WorkersPanel
from optiinfra_tui.worker.actions import can_retry, can_revoke
from optiinfra_tui.worker.monitor import Snapshot

# Why each action can't apply to the selected run, for the palette (the footer greys them).
NOT_APPLICABLE = {
    "retry": "Retry needs a failed or canceled run selected in the history.",
    "revoke": "Revoke needs a queued or retrying run selected in the history.",
    "detail": "Select a run in the history first.",
}

# Below SMALL columns the footer leaves these out, so that c, ? and q still fit at 80; the keys
# still work, and ? Help and the palette list them.
SMALL = 120
FOOTER_SKIPS_WHEN_SMALL = frozenset({"collect_all", "health", "pause"})


class KeysFooter(Footer):
    """Lists the keys in the first frame: Textual's footer stays empty until bindings change."""

    def __init__(self) -> None:
        super().__init__()
        self.set_reactive(Footer._bindings_ready, True)


class MainScreen(Screen):
    # Narrow terminals drop the costs panel (the costs view stays in the palette); small ones
    # also give the workers panel less room and the footer fewer keys.
    HORIZONTAL_BREAKPOINTS = [(0, "-small"), (SMALL, "-narrow"), (140, "-wide")]
    BINDINGS = bindings()

    def compose(self) -> ComposeResult:
        yield HealthHeader(id="header")
        with Horizontal(id="top"):
            yield WorkersPanel(id="workers", classes="panel")
            yield QueuePanel(id="queue", classes="panel")
            yield CostsPanel(id="costs", classes="panel")
        yield HistoryTable(id="history", classes="panel")
        yield StatsStrip(id="stats", classes="panel")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(HistoryTable).focus()
        # The app sets the palette before this signal: the panels redraw in the new colours.
        self.app.theme_changed_signal.subscribe(self, lambda _: self.redraw())

    def redraw(self) -> None:
        for panel in (HealthHeader, WorkersPanel, QueuePanel, CostsPanel, HistoryTable,
                      StatsStrip):
            self.query_one(panel).redraw()

    _small: bool | None = None

    def on_resize(self, event: events.Resize) -> None:
        small = event.size.width < SMALL
        if small != self._small:
            if self._small is not None:  # the first footer is composed at this size anyway
                self.refresh_bindings()  # the footer rebuilds from active_bindings
            self._small = small

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        active = super().active_bindings
        if self.size.width >= SMALL:
            return active
        return {key: b._replace(binding=replace(b.binding, show=False))
                if b.binding.action in FOOTER_SKIPS_WHEN_SMALL else b
                for key, b in active.items()}

    # --- data from the app ----------------------------------------------------------------

    @property
    def history(self) -> HistoryTable:
        return self.query_one(HistoryTable)

    @property
    def selected(self) -> RunRow | None:
        return self.history.selected

    def apply_state(self, state: Snapshot) -> None:
        self.query_one(HealthHeader).show(state.mode, state.backends, state.health, state.errors,
                                          self.app.source.watching(state), state.taken_at,
                                          state.alerts)
        self.query_one(WorkersPanel).show(state.workers)
        self.query_one(QueuePanel).show(state.queue, state.schedules)
        self.query_one(StatsStrip).show(state.stats)

    def apply_page(self, page: HistoryPage, cursor: str) -> None:
        before = self.selected
        table = self.history
        table.show(page, cursor)
        where = f"page {page.query.page + 1}"
        flt = page.query.filter.describe()
        table.set_filter_text(flt)
        table.border_subtitle = page.error or (where + (", more below" if page.has_more else ""))
        if self.selected != before:
            self._bindings_may_have_changed()

    def apply_costs(self, costs: CostsData) -> None:
        self.query_one(CostsPanel).show(costs)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.history:
            self._bindings_may_have_changed()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table is self.history:
            self.action_detail()

    def on_history_table_page_request(self, event: HistoryTable.PageRequest) -> None:
        self.app.move_history(event.direction)

    _applicable: tuple[bool, bool, bool] | None = None

    def _bindings_may_have_changed(self) -> None:
        # refresh_bindings rebuilds the footer: only when retry/revoke/detail really change.
        now = (can_retry(self.selected), can_revoke(self.selected), self.selected is not None)
        if now != self._applicable:
            self._applicable = now
            self.refresh_bindings()

    # --- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry":
            return True if can_retry(self.selected) else None
        if action == "revoke":
            return True if can_revoke(self.selected) else None
        if action == "detail":
            return True if self.selected else None
        return True

    def run_from_palette(self, action: str) -> None:
        if not self.check_action(action, ()):
            self.notify(NOT_APPLICABLE.get(action, "Not available now."), severity="warning")
            return
        self.call_later(self.run_action, action)

    def action_collect(self) -> None:
        from optiinfra_tui.tui.screens.collect import CollectScreen

        self.app.push_screen(CollectScreen(self.app.rt.settings), self.app.start_collection)

    def action_collect_all(self) -> None:
        self.app.collect_everything()

    def action_health(self) -> None:
        self.app.health_check()

    def action_retry(self) -> None:
        if self.selected:
            self.app.retry_run(self.selected.id)

    def action_revoke(self) -> None:
        if self.selected:
            self.app.revoke_run(self.selected.id)

    def action_filter(self) -> None:
        from optiinfra_tui.tui.screens.filter import FilterScreen

        self.app.push_screen(FilterScreen(self.app.history_filter), self.app.set_filter)

    def action_pause(self) -> None:
        self.app.toggle_schedules()

    def action_help(self) -> None:
        from optiinfra_tui.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen(self.app.rt.settings))

    def action_detail(self) -> None:
        if self.selected:
            from optiinfra_tui.tui.screens.detail import RunDetailScreen

            self.app.push_screen(RunDetailScreen(self.selected.id))

    def action_costs(self) -> None:
        from optiinfra_tui.tui.screens.costs import CostsScreen

        self.app.push_screen(CostsScreen())

    def on_costs_panel_open(self, event: CostsPanel.Open) -> None:
        self.action_costs()
