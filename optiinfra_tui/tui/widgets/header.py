"""The top line: mode, and each backend's health with its latency."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from optiinfra_tui.health import Health

ORDER = ("queue", "history", "metrics")


class HealthHeader(Static):
    """Redraws only when what it shows changes (latencies are rounded for that reason)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(Text.assemble((" OptiInfra ", "bold"), ("  connecting…", "dim")), **kwargs)
        self._shown: Text | None = None

    def show(self, mode: str, backends: dict[str, str], health: list[Health],
             errors: list[str]) -> None:
        text = render_header(mode, backends, health, errors)
        if text != self._shown:
            self._shown = text
            self.update(text)


def render_header(mode: str, backends: dict[str, str], health: list[Health],
                  errors: list[str]) -> Text:
    by_name = {h.name: h for h in health}
    t = Text(" OptiInfra ", style="bold")
    t.append(f" {mode} ", style="reverse")
    for name in ORDER:
        t.append("  ")
        _backend(t, name, backends.get(name, ""), by_name.get(name))
    for h in health:
        if h.name not in ORDER:  # provider APIs, recorded by the health check task
            t.append("  ")
            _backend(t, h.name, "", h)
    for err in errors:
        t.append(f"  ! {err}", style="bold #ff5f5f")
    return t


def _backend(t: Text, name: str, label: str, h: Health | None) -> None:
    t.append(f"{name}", style="bold")
    if label:
        t.append(f" ({label})", style="dim")
    if h is None:
        t.append(" ? unchecked", style="dim")
    elif h.ok:
        lat = f" {h.latency_ms:.1f} ms" if h.latency_ms is not None else ""
        t.append(f" ● ok{lat}", style="#5fd75f")
    else:
        msg = h.message.split(" (checked")[0][:60]
        t.append(f" ✖ DOWN {msg}", style="bold #ff5f5f")
