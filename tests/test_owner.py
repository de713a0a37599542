"""One process per embedded data dir runs the collections: the owner lock, and what the
other processes do about it (real processes: a lock holder, headless, huey_consumer)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from procs import Consumer, stop_all, worker_env
from services import wait_until

from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import runs
from optiinfra_tui.worker.collection import request_collection
from optiinfra_tui.worker.owner import StoreOwned, claim_embedded, embedded_owner, release
from optiinfra_tui.worker.pool import WorkerPool
from optiinfra_tui.worker.runtime import Runtime

HOLD = ("import sys, time\n"
        "from optiinfra_tui.worker.owner import claim_embedded\n"
        "claim_embedded(sys.argv[1], 'test-holder')\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")


@pytest.fixture
def holder(tmp_path):
    """Start a process that owns a data dir until it is killed."""
    procs = []

    def start(home) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for p in procs:
        p.kill()
        p.wait(10)


def test_the_owner_is_named_by_pid_and_host_and_its_lock_dies_with_it(tmp_path, holder):
    home = tmp_path / "home"
    assert embedded_owner(home) is None  # never owned
    proc = holder(home)
    found = embedded_owner(home)
    assert (found.pid, found.host, found.kind) == (proc.pid, socket.gethostname(), "test-holder")
    assert found.describe() == f"pid {proc.pid} on {socket.gethostname()} (test-holder)"
    with pytest.raises(StoreOwned) as taken:
        claim_embedded(home, "test")
    assert f"pid {proc.pid}" in str(taken.value) and "CLICKHOUSE_URL" in str(taken.value)

    proc.send_signal(signal.SIGKILL)  # no handler runs: the kernel drops the lock
    proc.wait(10)
    assert embedded_owner(home) is None
    claim = claim_embedded(home, "test")
    try:
        assert embedded_owner(home).is_this_process
    finally:
        release(claim)
    assert embedded_owner(home) is None


def test_a_task_picked_up_where_another_process_owns_the_data_dir_is_handed_back(
        make_env, holder, fake_vultr):
    env = make_env(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    home = env["OPTIINFRA_HOME"]  # chDB is this test process's one engine, still embedded
    owner = holder(home)
    rt = Runtime(load_settings(env))
    rt.history()
    run = request_collection(rt, rt.settings.default_customer_id, "vultr", None, trigger="cli")

    # A worker here takes the task although it can't open chDB: it must give it back.
    rt.huey.execute(rt.huey.dequeue())
    assert runs.get_run(run.id).status == "queued" and runs.attempts(run.id) == []
    assert rt.huey.scheduled_count() == 1  # back in the queue, due again in a moment
    with pytest.raises(StoreOwned):
        WorkerPool(rt, workers=1, kind="test").start()  # no workers beside an owner

    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    pool = WorkerPool(rt, workers=1, kind="test")
    pool.start()
    try:
        done = wait_until(lambda: (r := runs.get_run(run.id)).is_final and r, 60)
        assert done and done.status == "success" and done.attempt == 1, done
        assert done.metrics_collected == fake_vultr.line_count()
    finally:
        pool.stop(timeout=10)
        rt.close()


def test_a_second_headless_or_a_huey_consumer_on_an_owned_data_dir_refuse_to_start(
        tmp_path, fake_vultr):
    (tmp_path / "none.toml").write_text("schedules = []\n")
    env = worker_env(os.environ, VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                     OPTIINFRA_CONFIG=tmp_path / "none.toml")
    home = tmp_path / "home"
    first = Consumer("headless", env, home, workers=1).start()
    others = [Consumer("headless", env, home, workers=1), Consumer("huey", env, home, workers=1)]
    try:
        assert wait_until(lambda: (o := embedded_owner(home)) and o.pid == first.pid, 60), \
            first.printed()
        for other in others:
            # Each its own stdout file in the shared home.
            other.home = tmp_path / f"out-{other.kind}"
            other.env["OPTIINFRA_HOME"] = str(home)
            other.start()
            assert other.proc.wait(60) == 2, other.printed()
            said = other.printed()
            assert f"in use by pid {first.pid} on {socket.gethostname()} (headless)" in said, said
            assert "Traceback" not in said
        assert first.alive() and embedded_owner(home).pid == first.pid
    finally:
        stop_all([first, *others])
    assert first.proc.returncode == 0, first.printed()
