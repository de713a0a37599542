"""Costs panel: month to date, the pending estimate, spend per day and provider (charges spread
over their periods)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Static

from optiinfra_tui.formats import money
from optiinfra_tui.providers import colour as provider_colour
from optiinfra_tui.tui.palette import palette
from optiinfra_tui.tui.source import CostsData
from optiinfra_tui.tui.widgets.latest import ShowsLatest

BLOCKS = " ▁▂▃▄▅▆▇█"


class CostsPanel(ShowsLatest[CostsData], Static, can_focus=True):
    """Enter opens the full costs view."""

    BINDINGS = [Binding("enter", "open", "Costs view")]

    class Open(Message):
        """The user asked for the full costs view."""

    def __init__(self, days: int = 30, chart_height: int = 4, **kwargs) -> None:
        super().__init__(Text("connecting…", style="dim"), **kwargs)
        self.border_title = "Costs"
        self.days, self.chart_height = days, chart_height

    def action_open(self) -> None:
        self.post_message(self.Open())

    def draw(self, costs: CostsData) -> None:
        self.update(render_costs(costs, self.days, self.chart_height))


def render_costs(c: CostsData, days: int, height: int) -> Text:
    """The panel: the main currency's month to date and estimate, over its daily spend."""
    if c.error:
        return Text.assemble(("metrics unavailable\n", f"bold {palette().error}"), (c.error, "dim"))
    if not c.summary:
        return Text("no cost data yet: press c to collect", style="dim")
    main = c.summary[0]
    t = Text()
    t.append("MTD ", style="dim")
    t.append(money(main.month_to_date, main.currency), style="bold")
    t.append("  est. ", style="dim")
    t.append(money(main.estimated_cost, main.currency), style=f"bold {palette().warning}")
    t.append("\n")
    t.append_text(spend_chart(c.by_day, main.currency, c.today, days, height))
    if len(c.summary) > 1:
        t.append(f"  +{len(c.summary) - 1} currency: enter", style="dim")
    return t


def spend_chart(by_day: list[tuple[date, str, str, Decimal]], currency: str, today: date | None,
                days: int, height: int, bar: int = 1) -> Text:
    """Stacked bars of one currency, one per day (`bar` cells wide), one colour per provider,
    with a legend; each charge counts on the days of its charge period."""
    mine = [(d, p, amount) for d, p, cur, amount in by_day if cur == currency]
    today = today or max((d for d, _, _ in mine), default=date.today())
    first = today - timedelta(days=days - 1)
    per_day: dict[date, dict[str, Decimal]] = defaultdict(dict)
    providers: list[str] = []
    for d, provider, amount in mine:
        if first <= d <= today:
            per_day[d][provider] = per_day[d].get(provider, Decimal(0)) + amount
            if provider not in providers:
                providers.append(provider)
    totals = {d: sum(v.values(), Decimal(0)) for d, v in per_day.items()}
    peak = max(totals.values(), default=Decimal(0))
    t = Text()
    if peak <= 0:
        t.append(f"no {currency} spend in the last {days} days", style="dim")
        return t
    top = f"{peak:,.0f}"  # the legend names the currency
    label_w = len(top)
    for level in range(height, 0, -1):
        t.append((top if level == height else "").rjust(label_w) + "│", style="dim")
        for i in range(days):
            char, style = _cell(per_day.get(first + timedelta(days=i), {}), peak, height, level)
            t.append(char * bar + (" " if bar > 1 else ""), style)
        t.append("\n")
    width = days * (bar + 1 if bar > 1 else 1)
    t.append(" " * label_w + "└" + "─" * width + "\n", style="dim")
    span = f"{first:%m-%d}".ljust(width - 5) + f"{today:%m-%d}"
    t.append(" " * (label_w + 1) + span + "\n", style="dim")
    for p in providers:
        t.append("■ ", style=provider_colour(p))
        t.append(p + "  ")
    t.append(f"{currency}/day", style="dim")
    return t


def _cell(day: dict[str, Decimal], peak: Decimal, height: int, level: int) -> tuple[str, str]:
    total = sum(day.values(), Decimal(0))
    eighths = int(total / peak * height * 8) if peak else 0
    if total > 0 and eighths == 0:
        eighths = 1  # a day with any spend shows
    filled = eighths - (level - 1) * 8
    if filled <= 0:
        return " ", ""
    # The provider whose stacked segment reaches this cell gives its colour.
    mid = (Decimal(level) - Decimal("0.5")) / height * peak
    acc, colour = Decimal(0), "white"
    for provider, amount in day.items():
        acc += amount
        colour = provider_colour(provider)
        if acc >= mid:
            break
    return BLOCKS[min(8, filled)], colour
