"""The one way a panel fed a single value draws it: once per change, and again on a theme change."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class ShowsLatest(Generic[T]):
    """Mixin: `show(value)` draws only a changed value; `redraw()` draws the last one again."""

    _shown: T | None = None

    def draw(self, value: T) -> None:
        raise NotImplementedError

    def show(self, value: T) -> None:
        if value == self._shown:
            return
        self._shown = value
        self.draw(value)

    def redraw(self) -> None:
        """Draw again in the current palette: what is shown has the last theme's colours."""
        if self._shown is not None:
            self.draw(self._shown)
