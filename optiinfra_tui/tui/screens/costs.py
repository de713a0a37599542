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

from optiinfra_tui.formats import money
from optiinfra_tui.tui.palette import palette
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

    def __init__(self) -> None:
        super().__init__()
        self.costs: CostsData | None = None

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
        self.app.theme_changed_signal.subscribe(self, self._redraw)

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self, _theme: object = None) -> None:
        if self.costs is not None:
            self.show(self.costs)

    def show(self, costs: CostsData) -> None:
        self.costs = costs
        width = self.query_one("#costs-view").content_region.width or self.size.width
        self.query_one("#costs-figures", Static).update(figures(costs))
        self.query_one("#costs-chart", Static).update(charts(costs, width))
        self.query_one("#costs-tables", Static).update(totals(costs, width))

    def action_close(self) -> None:
        self.dismiss()


def figures(c: CostsData) -> Table | Text:
    """Per currency (a column each): billed, estimated, total and month to date, each with
    what it means."""
    if c.error:
        return Text.assemble(("metrics unavailable\n", f"bold {palette().error}"), (c.error, "dim"))
    if not c.summary:
        return Text("No cost data yet: collect with c (or `optiinfra-tui collect PROVIDER`).",
                    style="dim")
    t = Table(box=None, header_style="bold dim", padding=(0, 2, 0, 0))
    t.add_column("", style="bold", no_wrap=True)
    for s in c.summary:
        t.add_column(s.currency, justify="right", no_wrap=True)
    t.add_column("", style="dim", ratio=1)
    s0 = c.summary[0]
    meanings = dict(MEANINGS)
    for name, figure, style in (("billed", "billed_cost", ""),
                                ("estimated", "estimated_cost", palette().warning),
                                ("total", "total", "bold"), ("month to date", "month_to_date", "bold")):
        meaning = meanings[name]
        if name == "month to date":
            meaning = f"{s0.month_start:%m-%d} to {s0.today:%m-%d}: {meaning}"
        # The column names the currency: figures without a symbol, aligned on the point.
        t.add_row(name, *(Text(money(getattr(s, figure), s.currency, symbol=False),
                               style=style) for s in c.summary), meaning)
    return t


def chart_bar(width: int) -> int:
    """The widest bars (1-3 cells a day) that fit DAYS days and the axis in `width` cells."""
    for bar in (3, 2):
        if DAYS * (bar + 1) + 10 <= width:
            return bar
    return 1


def charts(c: CostsData, width: int) -> Group | Text:
    if c.error or not c.summary:
        return Text("")
    parts: list = [Text("")]
    for s in c.summary:
        parts.append(Text(f"{s.currency} per day, last {DAYS} days (charges spread over their "
                          "periods)", style="bold"))
        parts.append(spend_chart(c.by_day, s.currency, c.today, DAYS, 12, bar=chart_bar(width),
                                 width=width))
        parts.append(Text(""))
    return Group(*parts)


def totals(c: CostsData, width: int) -> Table | Group:
    provider, service = _totals("provider", c.by_provider), _totals("service", c.by_service)
    if width < 130:  # side by side, they would squeeze each other's figures
        return Group(provider, Text(""), service)
    grid = Table.grid(padding=(0, 4))
    grid.add_row(provider, service)
    return grid


def _totals(by: str, rows: list) -> Table | Text:
    if not rows:
        return Text(f"no cost rows by {by} yet", style="dim")
    t = Table(title=f"by {by}", title_justify="left", box=None, header_style="bold dim")
    # Narrow, a long name wraps; the figures never do.
    t.add_column(by.upper(), max_width=34)
    whose = by == "service"  # providers name their services alike
    if whose:
        t.add_column("PROVIDER", no_wrap=True)
    t.add_column("CUR", no_wrap=True)
    for label in ("BILLED", "ESTIMATED", "TOTAL", "ROWS"):
        t.add_column(label, justify="right", no_wrap=True)
    for r in rows:
        t.add_row(str(r.key), *([r.provider] if whose else []), r.currency,
                  *(money(v, r.currency, symbol=False) for v in (
                      r.billed_cost, r.estimated_cost, r.total)), f"{r.rows:,}")
    return t
