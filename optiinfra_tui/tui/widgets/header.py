"""The top line: mode, who runs the workers when not this process, an alert that is firing,
and each backend's and provider's health with its latency, and its age once a check is
overdue."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.widgets import Static

from optiinfra_tui.formats import clip
from optiinfra_tui.tui.palette import palette
from optiinfra_tui.worker.health import BACKENDS as ORDER
from optiinfra_tui.worker.health import NO_CREDENTIALS, Health
from optiinfra_tui.worker.monitor import ActiveAlert


class HealthHeader(Static):
    """Redraws only when what it shows changes (latencies are rounded for that reason).

    Too wide for the terminal, it drops the labels and latencies of healthy checks, then
    their 'ok' (the green dot stays), then ends in an ellipsis: states and ages stay in view.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(Text.assemble((" OptiInfra ", "bold"), ("  connecting…", "dim")), **kwargs)
        self._shown: Text | None = None
        self._args: tuple | None = None

    def show(self, mode: str, backends: dict[str, str], health: list[Health],
             errors: list[str], watching: str | None = None,
             now: datetime | None = None, alerts: list[ActiveAlert] | None = None) -> None:
        self._args = (mode, backends, health, errors, watching, now, alerts or [])
        self._render_fitted()

    def on_resize(self) -> None:
        if self._args is not None:
            self._render_fitted()

    def redraw(self) -> None:
        """Draw again in the current palette: what is shown has the last theme's colours."""
        self._shown = None
        if self._args is not None:
            self._render_fitted()

    def _render_fitted(self) -> None:
        width = self.size.width
        text = render_header(*self._args)
        for level in (1, 2):
            if not width or text.cell_len <= width:
                break
            text = render_header(*self._args, compact=level)
        if width and text.cell_len > width:
            text.truncate(width, overflow="ellipsis")
        if text != self._shown:
            self._shown = text
            self.update(text)


def render_header(mode: str, backends: dict[str, str], health: list[Health],
                  errors: list[str], watching: str | None = None,
                  now: datetime | None = None, alerts: list[ActiveAlert] | None = None,
                  compact: int = 0) -> Text:
    """compact 1 drops healthy checks' labels and latencies, 2 their 'ok' too."""
    by_name = {h.name: h for h in health}
    p = palette()
    t = Text(" OptiInfra ", style="bold")
    t.append(f" {mode} ", style="reverse")
    if watching:  # first, so that a narrow terminal still shows it
        t.append(f"  watching: {watching}", style=f"bold {p.warning}")
    if alerts:  # next: the one thing a narrow terminal must not cut (`status` has the detail)
        t.append("  ")
        t.append(f" ALERT {alerts[0].label} ", style=f"bold reverse {p.error}")
        if len(alerts) > 1:
            t.append(f" +{len(alerts) - 1} more", style=f"bold {p.error}")
    for name in ORDER:
        t.append("  ")
        h = by_name.get(name)
        # Compact: a healthy backend's label goes; a down one keeps it (which server is it?).
        label = "" if compact and h is not None and h.ok else backends.get(name, "")
        _backend(t, name, label, h, now, compact)
    checks = [h for h in health if h.name not in ORDER]  # provider APIs, per customer
    if len(checks) > GROUP_OVER:
        _grouped(t, checks, now, compact)
    else:
        for h in checks:
            t.append("  ")
            _backend(t, h.name, "", h, now, compact)
    for err in errors:
        t.append(f"  ! {err}", style=f"bold {p.error}")
    return t


# More provider checks than this (a customer each): the healthy ones are counted per
# provider, with the age of the oldest when overdue, and only failing ones are named, first,
# so a narrow header still shows them.
GROUP_OVER = 6
NAMED_AT_MOST = 5


def _grouped(t: Text, checks: list[Health], now: datetime | None, compact: int) -> None:
    p = palette()
    failing = [h for h in checks if not h.ok]
    healthy: dict[str, list[Health]] = {}
    for h in checks:
        if h.ok:
            healthy.setdefault(h.name.split(":", 1)[0], []).append(h)
    for h in failing[:NAMED_AT_MOST]:
        t.append("  ")
        _backend(t, h.name, "", h, now, compact)
    if len(failing) > NAMED_AT_MOST:
        t.append(f"  +{len(failing) - NAMED_AT_MOST:,} more failing", style=f"bold {p.error}")
    for provider, group in healthy.items():
        t.append(f"  {provider}", style="bold")
        t.append(f" ● {len(group):,}" if compact > 1 else f" ● ok ×{len(group):,}",
                 style=p.success)
        oldest = min(group, key=lambda h: h.checked_at or datetime.max)
        late = oldest.late(now) if now is not None else ""
        if late:
            t.append(f" oldest {late}", style=p.warning)


def _backend(t: Text, name: str, label: str, h: Health | None, now: datetime | None,
             compact: int = 0) -> None:
    p = palette()
    t.append(f"{name}", style="bold")
    if label:
        t.append(f" ({label})", style="dim")
    if h is None:
        t.append(" ? unchecked", style="dim")
    elif h.ok:
        lat = f" {h.latency_ms:.1f} ms" if h.latency_ms is not None and not compact else ""
        t.append(" ●" if compact > 1 else f" ● ok{lat}", style=p.success)
    elif h.message.startswith(NO_CREDENTIALS):
        t.append(f" ○ {clip(h.message, 60)}", style=f"bold {p.warning}")
    else:
        t.append(f" ✖ DOWN {clip(h.message, 60)}", style=f"bold {p.error}")
    late = h.late(now) if h is not None and now is not None else ""
    if late:
        t.append(f" {late}", style=p.warning)
