"""Shown while quitting waits for tasks in flight: the user sees why the app hasn't gone yet."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class QuittingScreen(ModalScreen[None]):
    def __init__(self, in_flight, timeout: float) -> None:
        super().__init__()
        self.in_flight = in_flight  # callable: how many tasks are still running
        self.timeout = timeout
        self.started = time.monotonic()

    def compose(self) -> ComposeResult:
        with Vertical(id="quitting", classes="dialog"):
            yield Static("", id="quitting-text")

    def on_mount(self) -> None:
        self._tick()
        self.set_interval(0.5, self._tick)

    def _tick(self) -> None:
        left = max(0.0, self.timeout - (time.monotonic() - self.started))
        n = self.in_flight()
        self.query_one("#quitting-text", Static).update(
            f"Quitting: waiting for {n} task{'s' if n != 1 else ''} in flight to finish "
            f"(at most {left:.0f} s more).\nNo new tasks are taken. Runs cut off by the "
            "time limit are recovered by the next consumer.")
