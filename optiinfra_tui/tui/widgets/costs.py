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

    def on_resize(self) -> None:
        self.redraw()

    def draw(self, costs: CostsData) -> None:
        width = self.content_region.width or None  # None before the first layout
        self.update(render_costs(costs, self.days, self.chart_height, width))
        others = len(costs.summary) - 1 if not costs.error else 0
        # Other currencies are never added in: the border says where they are.
        self.border_subtitle = (f"+{others} currenc{'y' if others == 1 else 'ies'}: enter"
                                if others > 0 else "")


def render_costs(c: CostsData, days: int, height: int, width: int | None = None) -> Text:
    """The panel: the main currency's month to date and estimate, over its daily spend, in
    `width` cells (None: as wide as it takes)."""
    if c.error:
        return Text.assemble(("metrics unavailable\n", f"bold {palette().error}"), (c.error, "dim"))
    if not c.summary:
        return Text("no cost data yet: press c to collect", style="dim")
    main = c.summary[0]
    t = headline(main.month_to_date, main.estimated_cost, main.currency, width)
    t.append("\n")
    t.append_text(spend_chart(c.by_day, main.currency, c.today, days, height, width=width))
    return t


def headline(mtd: Decimal, estimate: Decimal, currency: str, width: int | None) -> Text:
    """'MTD $1,234.57  est. $98.10', the estimate's currency left out, then the estimate
    itself, where the line would not fit in `width`."""
    mtd_text = money(mtd, currency)
    for est in (money(estimate, currency), money(estimate, currency, symbol=False), None):
        if est is None or width is None or len(f"MTD {mtd_text}  est. {est}") <= width:
            break
    t = Text()
    t.append("MTD ", style="dim")
    t.append(mtd_text, style="bold")
    if est is not None:
        t.append("  est. ", style="dim")
        t.append(est, style=f"bold {palette().warning}")
    return t


def short_amount(value: Decimal) -> str:
    """At most five characters: '9,016', '37k', '370k', '3.7M', '98G' (an axis label)."""
    if value < 10_000:
        return f"{value:,.0f}"
    for scale, suffix in ((Decimal(10) ** 3, "k"), (Decimal(10) ** 6, "M"),
                          (Decimal(10) ** 9, "G"), (Decimal(10) ** 12, "T")):
        scaled = value / scale
        if scaled < 10:
            return f"{scaled:.1f}{suffix}"
        if scaled < 1000:
            return f"{scaled:.0f}{suffix}"
    return f"{value:.0e}"


def spend_chart(by_day: list[tuple[date, str, str, Decimal]], currency: str, today: date | None,
                days: int, height: int, bar: int = 1, width: int | None = None) -> Text:
    """Stacked bars of one currency, one per day (`bar` cells wide), one colour per provider,
    with a legend; each charge counts on the days of its charge period. In `width` cells:
    a shorter axis label, then fewer days, where the full ones would not fit."""
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
    cell = bar + 1 if bar > 1 else 1
    top = f"{peak:,.0f}"  # the legend names the currency
    if width is not None and len(top) + 1 + days * cell > width:
        top = short_amount(peak)
        fit = max(1, (width - len(top) - 1) // cell)
        if fit < days:  # the latest days; bars keep the whole window's scale
            days, first = fit, today - timedelta(days=fit - 1)
    label_w = len(top)
    for level in range(height, 0, -1):
        t.append((top if level == height else "").rjust(label_w) + "│", style="dim")
        for i in range(days):
            char, style = _cell(per_day.get(first + timedelta(days=i), {}), peak, height, level)
            t.append(char * bar + (" " if bar > 1 else ""), style)
        t.append("\n")
    span_w = days * cell
    t.append(" " * label_w + "└" + "─" * span_w + "\n", style="dim")
    span = f"{first:%m-%d}".ljust(span_w - 5) + f"{today:%m-%d}" if span_w >= 11 else ""
    t.append(" " * (label_w + 1) + span + "\n", style="dim")
    t.append_text(legend(providers, currency, width))
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


def legend(providers: list[str], currency: str, width: int | None) -> Text:
    """'■ <provider>  ■ <provider>  USD/day', its spacing tightened where it would not fit in
    `width`."""
    items = [(f"■ {p}", provider_colour(p)) for p in providers] + [(f"{currency}/day", "dim")]
    gap = "  "
    if width is not None and len(gap.join(text for text, _ in items)) > width:
        gap = " "
    t = Text()
    for n, (text, style) in enumerate(items):
        if n:
            t.append(gap)
        if text.startswith("■"):
            t.append("■", style=style)
            t.append(text[1:])
        else:
            t.append(text, style=style)
    if width is not None:
        t.truncate(width, overflow="ellipsis")
    return t
