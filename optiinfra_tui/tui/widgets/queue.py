"""Queue panel: pending count, tasks waiting for an ETA, retrying runs, schedules."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from optiinfra_tui.formats import clip
from optiinfra_tui.storage.history import utcnow
from optiinfra_tui.tui.palette import palette
from optiinfra_tui.worker.monitor import QueueInfo, ScheduleInfo

# The panel's text width (app.tcss: 38 less border and padding): a longer line would wrap.
WIDTH = 34


class QueuePanel(VerticalScroll, can_focus=True):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Queue"
        self._body = Static(Text("connecting…", style="dim"))
        self._shown: Text | None = None
        self._args: tuple | None = None

    def compose(self):
        yield self._body

    def show(self, queue: QueueInfo | None, schedules: list[ScheduleInfo]) -> None:
        self._args = (queue, schedules)
        text = render_queue(queue, schedules)
        if text != self._shown:
            self._shown = text
            self._body.update(text)

    def redraw(self) -> None:
        """Draw again in the current palette: what is shown has the last theme's colours."""
        self._shown = None
        if self._args is not None:
            self.show(*self._args)


def render_queue(queue: QueueInfo | None, schedules: list[ScheduleInfo],
                 now: datetime | None = None) -> Text:
    now = now or utcnow()
    p = palette()
    t = Text()
    if queue is None:
        t.append("queue unreachable\n", style=f"bold {p.error}")
    else:
        t.append("pending ", style="dim")
        t.append(str(queue.pending), style="bold")
        t.append("  scheduled ", style="dim")
        t.append(str(len(queue.scheduled)), style="bold")
        t.append("  retrying ", style="dim")
        t.append(str(len(queue.retrying)), style=f"bold {p.warning}" if queue.retrying else "bold")
        t.append("\n")
        for run_id, label, at in queue.retrying:
            eta = f"{at:%H:%M:%S}" if at else "-"
            t.append(f" {clip(f'↻ run {run_id} at {eta} {label}', WIDTH - 1)}\n",
                     style=p.warning)
        for task in queue.scheduled:
            eta = f"{task.eta:%H:%M:%S}" if task.eta else "-"
            what = f"run {task.run_id}" if task.run_id else task.name
            t.append(f" {clip(f'⏲ {what} at {eta}', WIDTH - 1)}\n")
    t.append("schedules\n", style="bold")
    if not schedules:
        t.append(" none configured\n", style="dim")
    for s in schedules:
        t.append(f" {clip(s.name, 20):<20} ", style="dim" if s.paused else "bold")
        t.append(f"{clip(s.every, WIDTH - 22)}\n", style="dim")
        if s.paused:
            t.append("   PAUSED", style=f"bold {p.warning}")
        else:
            t.append(f"   next {_when(s.next_run, now)}")
        t.append("\n")
        note = s.credentials_note()
        if note:  # what the fan-out skips, and how to fix it (one space: fits 34 columns)
            t.append(f" {note}\n", style=f"bold {p.warning}")
    t.rstrip()
    return t


def _when(at: datetime | None, now: datetime) -> str:
    """The time of day for a run within a day; with its date for a monthly or yearly one."""
    if at is None:
        return "-"
    return f"{at:%H:%M:%S}" if at - now < timedelta(days=1) else f"{at:%Y-%m-%d %H:%M}"
