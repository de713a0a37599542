"""Messages that carry data from thread workers to the UI thread (post_message is thread-safe)."""

from __future__ import annotations

from textual.message import Message

from optiinfra_tui.tui.source import CostsData, HistoryPage
from optiinfra_tui.worker.monitor import Snapshot


class Activity(Message):
    """A worker thread of this process started or ended a task."""


class StateLoaded(Message):
    def __init__(self, state: Snapshot) -> None:
        super().__init__()
        self.state = state


class PageLoaded(Message):
    def __init__(self, page: HistoryPage) -> None:
        super().__init__()
        self.page = page


class CostsLoaded(Message):
    def __init__(self, costs: CostsData) -> None:
        super().__init__()
        self.costs = costs
