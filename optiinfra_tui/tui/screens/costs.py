"""The costs view: spend by day and provider, month to date, pending estimate, top services."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from optiinfra_tui.tui.fmt import money
from optiinfra_tui.tui.source import CostsData
from optiinfra_tui.tui.widgets.costs import render_costs

DAYS = 30


class CostsScreen(Screen):
    BINDINGS = [Binding("escape,q", "close", "Back")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="costs-view"):
            yield Static("Costs (from ClickHouse)", id="costs-title")
            yield Static("loading...", id="costs-chart")
            yield Static("", id="costs-tables")
        yield Footer()

    def on_mount(self) -> None:
        if self.app.costs is not None:
            self.show(self.app.costs)
        self.app.poller.wake(costs=True)

    def show(self, costs: CostsData) -> None:
        self.query_one("#costs-chart", Static).update(render_costs(costs, DAYS, 12, bar=3))
        self.query_one("#costs-tables", Static).update(totals(costs))

    def action_close(self) -> None:
        self.dismiss()


def totals(c: CostsData) -> Table:
    grid = Table.grid(padding=(0, 4))
    grid.add_row(_totals("provider", c.by_provider), _totals("service", c.by_service))
    return grid


def _totals(by: str, rows: list) -> Table | Text:
    if not rows:
        return Text(f"no cost rows by {by} yet", style="dim")
    t = Table(title=f"by {by}", title_justify="left", box=None, header_style="bold dim")
    t.add_column(by.upper(), no_wrap=True, max_width=34)
    t.add_column("BILLED", justify="right")
    t.add_column("ESTIMATED", justify="right")
    t.add_column("ROWS", justify="right")
    for r in rows:
        t.add_row(str(r.key), money(r.billed_cost), money(r.estimated_cost), f"{r.rows:,}")
    return t
