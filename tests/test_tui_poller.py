"""The dashboard's reader at rest: it reads the history window and posts to the screen only
when something changed, on a real history (no UI: what the poller asks and posts is checked)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from tui_data import StubMetrics
from tui_pilot import make_runtime

from optiinfra_tui.storage.history import CollectionRun
from optiinfra_tui.tui.messages import CostsLoaded, PageLoaded, StateLoaded
from optiinfra_tui.tui.poller import Poller
from optiinfra_tui.tui.source import Source
from optiinfra_tui.worker import runs

NOW = datetime(2026, 11, 20, 12, 0, 30)


class CountingSource(Source):
    """The real history reads, counted; costs from a stand-in (no chDB opened here)."""

    def __init__(self, rt) -> None:
        super().__init__(rt, clock=lambda: self.now, metrics=StubMetrics)
        self.now = NOW
        self.pages = 0

    def history(self, query, limit=100):
        self.pages += 1
        return super().history(query, limit)


def poller(tmp_path) -> tuple[Poller, CountingSource, list]:
    rt = make_runtime(tmp_path / "home")
    source, posted = CountingSource(rt), []
    return Poller(source, posted.append), source, posted


def kinds(posted: list) -> list[str]:
    return [type(m).__name__ for m in posted]


def test_at_rest_the_history_window_is_not_read_again(tmp_path):
    p, source, posted = poller(tmp_path)
    done = runs.create_run("acme", "vultr", ["cost"], "cli", 1)
    runs.finish_success(runs.start_attempt(done.id, "w"), 3)
    p.read_once(woken=False)
    assert source.pages == 1 and kinds(posted) == ["StateLoaded", "PageLoaded"]
    for _ in range(5):
        p.read_once(woken=False)
    assert source.pages == 1 and len(posted) == 2

    # A run added by any process moves the newest id: read once, then rest again.
    other = runs.create_run("globex", "vultr", ["cost"], "schedule", 1)
    p.read_once(woken=False)
    assert source.pages == 2 and [r.id for r in posted[-1].page.rows] == [other.id, done.id]
    # A run in view that is not final may change anywhere: read while it isn't.
    p.read_once(woken=False)
    assert source.pages == 3
    runs.finish_success(runs.start_attempt(other.id, "w"), 5)
    p.read_once(woken=False)
    assert source.pages == 4 and posted[-1].page.rows[0].status == "success"
    p.read_once(woken=False)
    p.read_once(woken=False)
    assert source.pages == 4
    # Something done in this process (an action, a task) reads at once.
    p.read_once(woken=True)
    assert source.pages == 5


def test_a_heartbeat_alone_redraws_nothing(tmp_path):
    p, source, posted = poller(tmp_path)
    rt = source.rt
    rt.activity.register("Worker-1")
    p.read_once(woken=False)
    states = [m for m in posted if isinstance(m, StateLoaded)]
    source.now = NOW + timedelta(seconds=1)  # this process's workers beat "now"
    p.read_once(woken=False)
    assert [m for m in posted if isinstance(m, StateLoaded)] == states
    t = threading.Thread(target=rt.activity.began, args=(7, "vultr/acme cost"), name="Worker-1")
    t.start()
    t.join()
    p.read_once(woken=True)
    assert isinstance(posted[-1], StateLoaded | PageLoaded)
    assert any(w.state == "busy" for m in posted if isinstance(m, StateLoaded)
               for w in m.state.workers)


def test_costs_are_read_again_when_a_run_finishes_not_as_the_hour_moves(tmp_path):
    p, source, posted = poller(tmp_path)

    def finished_at(at: datetime) -> None:
        run = runs.create_run("acme", "vultr", ["cost"], "cli", 1)
        CollectionRun.update(status="success", finished_at=at, metrics_collected=4).where(
            CollectionRun.id == run.id).execute()

    finished_at(NOW - timedelta(minutes=30))
    p.read_costs()
    p.read_once(woken=False)
    p._want_costs = False
    for minutes in (3, 20, 45):  # the run leaves the window: nothing was written
        source.now = NOW + timedelta(minutes=minutes)
        p.read_once(woken=False)
        assert not p._want_costs
    finished_at(source.now - timedelta(seconds=5))
    p.read_once(woken=False)
    assert p._want_costs
    assert kinds(posted).count("CostsLoaded") == 1 and isinstance(posted[0], CostsLoaded)
