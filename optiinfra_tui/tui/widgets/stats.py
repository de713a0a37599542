"""Stats strip: last hour's success rate, p50/p95 duration, rows, runs per minute sparkline."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static

from optiinfra_tui.formats import duration
from optiinfra_tui.tui.fmt import rate
from optiinfra_tui.tui.palette import palette
from optiinfra_tui.tui.widgets.latest import ShowsLatest
from optiinfra_tui.worker.monitor import Stats

SPARK_MIN = 12  # cells: fewer than this, the sparkline shows no shape


class StatsStrip(ShowsLatest[Stats], Horizontal):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Last hour"

    def compose(self) -> ComposeResult:
        yield Static(Text("connecting…", style="dim"), id="stats-figures")
        yield Static("runs/min", id="stats-label")
        yield Sparkline([0] * 60, id="stats-spark")

    def draw(self, stats: Stats) -> None:
        figures = render_stats(stats)
        self.query_one("#stats-figures", Static).update(figures)
        self.query_one("#stats-spark", Sparkline).data = list(stats.runs_per_minute)
        peak = max(stats.runs_per_minute, default=0)
        label = f"runs/min (peak {peak})"
        self.query_one("#stats-label", Static).update(label)
        self._needs = figures.cell_len + len(label) + 4 + SPARK_MIN
        self._fit()

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        # Too narrow for figures, label and a readable sparkline: the figures alone, cut with
        # an ellipsis rather than clipped mid-word by the layout.
        wide = self.content_size.width >= getattr(self, "_needs", 0)
        for part in ("#stats-label", "#stats-spark"):
            self.query_one(part).display = wide
        self.query_one("#stats-figures").styles.width = "auto" if wide else "1fr"


def render_stats(s: Stats) -> Text:
    t, p = Text(), palette()
    for label, value, style in (
        ("success", rate(s.success_rate), p.success if (s.success_rate or 0) >= 0.9 else p.warning),
        ("runs", f"{s.runs:,}", ""), ("failed", str(s.failed), p.error if s.failed else ""),
        ("p50", duration(s.p50_ms), ""), ("p95", duration(s.p95_ms), ""),
        ("rows", f"{s.rows:,}", ""),
    ):
        t.append(f"{label} ", style="dim")
        t.append(value, style=f"bold {style}".strip())
        t.append("  ")
    t.rstrip()
    return t
