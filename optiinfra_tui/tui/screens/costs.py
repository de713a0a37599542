"""The costs view: per currency billed, estimated, total and month to date; spend per day and
provider; top providers and services."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from optiinfra_tui.formats import clip, money
from optiinfra_tui.tui.source import CostsData
from optiinfra_tui.tui.widgets.costs import spend_chart

DAYS = 30
MEANINGS = (
    ("billed", "invoice lines, every month collected"),
    ("estimated", "pending charges of the months not invoiced yet"),
    ("total", "billed + estimated (currencies are never added together)"),
    ("month to date", "each charge spread over the days of its charge period, summed over "
                      "this month's days so far (UTC)"),
)


class CostsScreen(Screen):
    BINDINGS = [Binding("escape,q", "close", "Back")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="costs-view"):
            yield Static("Costs (from ClickHouse)", id="costs-title")
            yield Static("loading...", id="costs-figures")
            yield Static("", id="costs-chart")
            yield Static("", id="costs-tables")
        yield Footer()

    def on_mount(self) -> None:
        if self.app.costs is not None:
            self.show(self.app.costs)
        self.app.poller.wake(costs=True)

    def show(self, costs: CostsData) -> None:
        self.query_one("#costs-figures", Static).update(figures(costs))
        self.query_one("#costs-chart", Static).update(charts(costs))
        self.query_one("#costs-tables", Static).update(totals(costs))

    def action_close(self) -> None:
        self.dismiss()


def figures(c: CostsData) -> Table | Text:
    """Per currency: billed, estimated, total and month to date, with what each one means."""
    if c.error:
        return Text.assemble(("metrics unavailable\n", "bold #ff5f5f"), (c.error, "dim"))
    if not c.summary:
        return Text("No cost data yet: collect with c (or `optiinfra-tui collect vultr`).",
                    style="dim")
    s0 = c.summary[0]
    t = Table(box=None, header_style="bold dim", padding=(0, 2, 0, 0))
    t.add_column("CURRENCY", no_wrap=True)
    for label in ("BILLED", "ESTIMATED", "TOTAL",
                  f"MONTH TO DATE ({s0.month_start:%m-%d} to {s0.today:%m-%d})"):
        t.add_column(label, justify="right", no_wrap=True)
    for s in c.summary:
        t.add_row(s.currency, money(s.billed_cost, s.currency),
                  Text(money(s.estimated_cost, s.currency), style="#ffaf00"),
                  Text(money(s.total, s.currency), style="bold"),
                  Text(money(s.month_to_date, s.currency), style="bold"))
    notes = Text(style="dim")
    for name, meaning in MEANINGS:
        notes.append(f"\n{name}: ", style="bold dim")
        notes.append(meaning)
    return Group(t, notes, Text(""))


def charts(c: CostsData) -> Group | Text:
    if c.error or not c.summary:
        return Text("")
    parts: list = []
    for s in c.summary:
        parts.append(Text(f"{s.currency} per day, last {DAYS} days (charges spread over their "
                          "periods)", style="bold"))
        parts.append(spend_chart(c.by_day, s.currency, c.today, DAYS, 12, bar=3))
        parts.append(Text(""))
    return Group(*parts)


def totals(c: CostsData) -> Table:
    grid = Table.grid(padding=(0, 4))
    grid.add_row(_totals("provider", c.by_provider), _totals("service", c.by_service))
    return grid


def _totals(by: str, rows: list) -> Table | Text:
    if not rows:
        return Text(f"no cost rows by {by} yet", style="dim")
    t = Table(title=f"by {by}", title_justify="left", box=None, header_style="bold dim")
    t.add_column(by.upper(), no_wrap=True)
    t.add_column("BILLED", justify="right")
    t.add_column("ESTIMATED", justify="right")
    t.add_column("TOTAL", justify="right")
    t.add_column("ROWS", justify="right")
    for r in rows:
        t.add_row(clip(str(r.key), 34), money(r.billed_cost, r.currency),
                  money(r.estimated_cost, r.currency), money(r.total, r.currency), f"{r.rows:,}")
    return t
