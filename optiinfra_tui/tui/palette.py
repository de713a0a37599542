"""The dashboard's colours by meaning (error, success, ...), taken from the running Textual
theme so that every theme, light or dark, gives legible states; panels read `palette()` when
they render, and the app sets it on start and on every theme change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.color import Color
from textual.theme import BUILTIN_THEMES, Theme


@dataclass(frozen=True)
class Palette:
    error: str
    success: str
    warning: str
    info: str  # queued runs, keys in the help
    busy: str  # running runs, busy workers
    muted: str  # canceled runs, idle workers

    @classmethod
    def from_variables(cls, v: Mapping[str, str]) -> Palette:
        """From a theme's CSS variables: the `text-*` shades, made to be read on its background."""
        # foreground-muted has an alpha Rich can't draw: blend it onto the background.
        muted = Color.parse(v["background"]) + Color.parse(v["foreground-muted"])
        return cls(error=v["text-error"], success=v["text-success"], warning=v["text-warning"],
                   info=v["text-primary"], busy=v["text-secondary"], muted=muted.hex)

    @classmethod
    def from_theme(cls, theme: Theme) -> Palette:
        return cls.from_variables(theme.to_color_system().generate())


# Textual's default theme until an app sets its own (renders outside an app use this).
_current = Palette.from_theme(BUILTIN_THEMES["textual-dark"])


def palette() -> Palette:
    """The colours of the theme the dashboard shows now."""
    return _current


def use_palette(p: Palette) -> None:
    global _current
    _current = p


def status_style(status: str) -> str:
    """A run status's style: bold in its colour, canceled muted."""
    p = _current
    return {"queued": f"bold {p.info}", "running": f"bold {p.busy}",
            "retrying": f"bold {p.warning}", "success": f"bold {p.success}",
            "failed": f"bold {p.error}", "canceled": p.muted}.get(status, "")


def state_style(state: str) -> str:
    """A worker state's style."""
    return {"busy": f"bold {_current.busy}", "idle": _current.muted}.get(state, "")
