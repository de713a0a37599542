"""Issue 4's faults against real processes, one line of figures each.

    python bench/faults.py [--outage 20] [--fuzz-examples 3000] [--only kill,redis,...]

Starts its own redis-server (append-only file), PostgreSQL and fake Vultr server on free
ports in a temp dir; runs consumer processes (`optiinfra-tui --headless` and `huey_consumer
huey_config.huey`, each with its own OPTIINFRA_HOME) against them; provokes each fault
(kill -9, a stopped server, hostile responses); prints what happened; cleans up.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fake_vultr import FakeVultr  # noqa: E402
from procs import CLI, Consumer, RedisServer, stop_all, wait_for_heartbeats, worker_env  # noqa: E402
from services import PostgresServer, wait_until  # noqa: E402

from optiinfra_tui.storage import history  # noqa: E402
from optiinfra_tui.storage.history import (  # noqa: E402
    FINAL_STATUSES,
    CollectionRun,
    RunAttempt,
    ScheduleSlot,
    db,
)
from optiinfra_tui.worker import schedules  # noqa: E402

CUSTOMERS = 20  # each collection its own customer: a full walk every time, never skipped


class Lab:
    """The shared services of every scenario, in one temp dir."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="optiinfra-faults-"))
        os.chmod(self.root, 0o755)  # PostgreSQL runs as `postgres` when we are root
        self.redis = RedisServer(self.root / "redis").start()
        self.pg = PostgresServer(self.root / "pg")
        self.pg.start()
        # 12 invoices: 14 requests a collection, ~4 s at 4 requests/s.
        self.vultr = FakeVultr(invoices=12, items=3, pending=2).start()
        self.consumers: list[Consumer] = []
        customers = "".join(f'[customers.c{i}]\nvultr_api_key_env = "VULTR_API_KEY"\n'
                            for i in range(CUSTOMERS))
        (self.root / "customers.toml").write_text("schedules = []\n" + customers)
        (self.root / "fast.toml").write_text(
            '[[schedules]]\nname = "fast"\ndata_types = ["cost"]\ninterval = 2\n')

    def env(self, name: str, toml: str = "customers.toml", **extra) -> dict:
        """Fresh database `name` and an empty queue; the environment every consumer shares."""
        import redis

        redis.Redis.from_url(self.redis.url).flushall()
        url = self.pg.create_database(name)
        history.connect(url)
        return worker_env(os.environ, REDIS_URL=self.redis.url, DATABASE_URL=url,
                          VULTR_API_KEY=self.vultr.token, VULTR_API_URL=self.vultr.url,
                          OPTIINFRA_CONFIG=self.root / toml, RETRY_DELAY="1", **extra)

    def start(self, env: dict, kinds: list[str], name: str) -> list[Consumer]:
        consumers = [Consumer(kind, env, self.root / f"{name}-{i}-{kind}").start()
                     for i, kind in enumerate(kinds)]
        self.consumers += consumers
        if not wait_for_heartbeats(consumers, 120):
            raise RuntimeError(f"{name}: consumers did not start: "
                               + " | ".join(c.printed()[-500:] for c in consumers))
        return consumers

    def close(self) -> None:
        stop_all(self.consumers)
        db.close()
        self.vultr.stop()
        self.redis.stop()
        self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def request(env: dict, home: Path, customers: range) -> list[int]:
    """Queue one collection per customer, through the same code the CLI and keys use."""
    from optiinfra_tui.settings import load_settings
    from optiinfra_tui.worker import actions
    from optiinfra_tui.worker.runtime import Runtime

    rt = Runtime(load_settings(dict(env, OPTIINFRA_HOME=str(home))))
    return [actions.collect(rt, "vultr", f"c{i}").id for i in customers]


def final(ids: list[int], timeout: float) -> bool:
    def done() -> bool:
        try:
            return CollectionRun.select().where(CollectionRun.id.in_(ids),
                                                CollectionRun.status.in_(FINAL_STATUSES)
                                                ).count() == len(ids)
        except Exception:  # history store down
            return False

    return bool(wait_until(done, timeout, 0.5))


def overlapping_attempts(ids: list[int]) -> int:
    """Attempts that started before the previous attempt of the same run had ended."""
    n = 0
    for run_id in ids:
        tries = list(RunAttempt.select().where(RunAttempt.run_id == run_id)
                     .order_by(RunAttempt.attempt))
        n += sum(1 for a, b in zip(tries, tries[1:], strict=False)
                 if a.finished_at is None or b.started_at < a.finished_at)
    return n


def statuses(ids: list[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in CollectionRun.select().where(CollectionRun.id.in_(ids)):
        out[r.status] = out.get(r.status, 0) + 1
    return out


# --- scenarios ---------------------------------------------------------------------------------


def scenario_schedules(lab: Lab, slots_wanted: int = 10) -> str:
    env = lab.env("schedules", "fast.toml")
    consumers = lab.start(env, ["headless", "huey", "headless"], "sched")
    fast = ScheduleSlot.select().where(ScheduleSlot.schedule == "fast")  # not the hourly prune
    wait_until(lambda: fast.count() >= slots_wanted, 120, 0.2)
    schedules.set_paused(["fast"], True)
    time.sleep(2)
    slots = [s.slot for s in fast.order_by(ScheduleSlot.slot)]
    wait_until(lambda: CollectionRun.select().count() >= len(slots) and all(
        r.is_final for r in CollectionRun.select()), 120, 0.5)
    stop_all(consumers)
    scheduled = CollectionRun.select().where(CollectionRun.trigger == "schedule").count()
    span = int((slots[-1] - slots[0]).total_seconds()) // 2 + 1
    claimers = {s.claimed_by for s in fast}
    return (f"schedules   3 consumers (2 headless + huey_consumer), {len(slots)} slots of 2 s: "
            f"{scheduled} scheduled runs, {scheduled - len(slots)} duplicates, "
            f"{span - len(slots)} slots missed, slots claimed by {len(claimers)} consumers")


def scenario_kills(lab: Lab, collections: int = 20, rounds: int = 2) -> str:
    env = lab.env("kills", VULTR_MAX_RPS="4")
    consumers = lab.start(env, ["headless", "huey", "headless"], "kill")
    ids = request(env, lab.root / "producer", range(collections))
    kills = 0
    for _ in range(rounds):
        for c in consumers:
            def running_here(c=c) -> bool:
                return CollectionRun.select().where(
                    CollectionRun.status == "running",
                    CollectionRun.worker.contains(f":{c.pid}:")).exists()

            if wait_until(running_here, 60, 0.1):
                time.sleep(1.0)  # mid-collection: some pages read, more to come
                c.kill()
                kills += 1
                c.start()
    finished = final(ids, 300)
    stop_all(consumers)
    st = statuses(ids)
    recovered = RunAttempt.select().where(RunAttempt.run_id.in_(ids),
                                          RunAttempt.error_kind == "lost").count()
    return (f"kill -9     {collections} collections, {kills} SIGKILLs mid-collection "
            f"({rounds} per consumer, each restarted): {st.get('running', 0)} stuck in running, "
            f"{collections - sum(st.get(s, 0) for s in FINAL_STATUSES)} lost, "
            f"{sum(st.get(s, 0) for s in FINAL_STATUSES)}/{collections} finished "
            f"({st.get('success', 0)} success), {recovered} attempts recovered, "
            f"{overlapping_attempts(ids)} overlapping attempts"
            + ("" if finished else " [timed out]"))


def _non_info(text: str) -> list[str]:
    """Lines above INFO, and lines without a level (tracebacks, huey_consumer's bare lines)."""
    return [line for line in text.splitlines()
            if line.strip() and " INFO " not in line and "] INFO:" not in line]


def scenario_redis(lab: Lab, outage: float, collections: int = 16) -> str:
    env = lab.env("redis", VULTR_MAX_RPS="4")
    consumers = lab.start(env, ["headless", "huey"], "redis")
    ids = request(env, lab.root / "producer", range(collections))
    wait_until(lambda: statuses(ids).get("running", 0) >= 2, 60, 0.1)
    marks = [(len(c.logged()), len(c.printed())) for c in consumers]
    lab.redis.stop()
    stopped = time.monotonic()
    r = subprocess.run(CLI + ["collect", "vultr"], env=dict(env, OPTIINFRA_HOME=str(
        lab.root / "cli")), capture_output=True, text=True, timeout=60)
    recorded = CollectionRun.select().count() - collections
    time.sleep(max(0.0, outage - (time.monotonic() - stopped)))
    alive = all(c.alive() for c in consumers)
    lab.redis.start()
    finished = final(ids, 300)
    # The agent's health check (every 15 s) logs the way back.
    wait_until(lambda: "queue reachable again" in consumers[0].logged()[marks[0][0]:], 30)
    after = request(env, lab.root / "producer", range(2))
    recovered = alive and finished and final(after, 120)
    stop_all(consumers)
    headless, plain = consumers
    lines_log = len(_non_info(headless.logged()[marks[0][0]:]))
    lines_out = len(_non_info(headless.printed()[marks[0][1]:]))
    lines_huey = len(_non_info(plain.printed()[marks[1][1]:]))
    st = statuses(ids)
    return (f"redis down  {outage:g} s under {collections} collections: recovered by itself "
            f"{'yes' if recovered else 'NO'}; outage log lines: headless {lines_log} in its log "
            f"file, {lines_out} on stdout; huey_consumer {lines_huey}; `collect` meanwhile exit "
            f"{r.returncode}, {recorded} runs recorded; enqueued tasks lost "
            f"{collections - st.get('success', 0)}/{collections}")


def scenario_postgres(lab: Lab, outage: float, collections: int = 10) -> str:
    env = lab.env("pg_outage", VULTR_MAX_RPS="4")
    consumers = lab.start(env, ["headless", "huey", "headless"], "pg")
    ids = request(env, lab.root / "producer", range(collections))
    wait_until(lambda: statuses(ids).get("running", 0) >= 4, 60, 0.1)
    db.close()
    lab.pg.stop()
    time.sleep(outage)
    lab.pg.start_again()
    final(ids, 300)
    stop_all(consumers)
    present = CollectionRun.select().where(CollectionRun.id.in_(ids),
                                           CollectionRun.status.in_(FINAL_STATUSES),
                                           CollectionRun.finished_at.is_null(False)).count()
    st = statuses(ids)
    taken = RunAttempt.select().where(RunAttempt.run_id.in_(ids),
                                      RunAttempt.error_kind == "lost").count()
    return (f"postgres    {outage:g} s down during {collections} collections: final state "
            f"present {present}/{collections} ({st.get('success', 0)} success), "
            f"{taken} live runs mistaken for orphans, "
            f"{overlapping_attempts(ids)} overlapping attempts")


def scenario_fuzz(examples: int, accounts: int) -> str:
    import vultr_fuzz as vf
    from hypothesis import HealthCheck, Phase, given, settings

    from optiinfra_tui.errors import DataError
    from optiinfra_tui.settings import load_settings

    # Hostile pages make the client warn (repeated cursors...): expected here, not news.
    logging.getLogger("optiinfra").setLevel(logging.ERROR)
    crashes: list[str] = []
    counted = {"n": 0}
    quick = dict(deadline=None, database=None, phases=[Phase.generate],
                 suppress_health_check=list(HealthCheck))

    def guarded(call, value) -> None:
        counted["n"] += 1
        try:
            vf.check_row(call(value))
        except DataError:
            pass
        except Exception as exc:  # what the issue forbids: anything but a DataError
            crashes.append(f"{type(exc).__name__}: {exc}"[:200])

    def target(call):
        return lambda value: guarded(call, value)

    for _, (strategy, call) in sorted(vf.PARSERS.items()):
        given(strategy)(settings(max_examples=examples, **quick)(target(call)))()
    parsed = counted["n"]

    server = vf.PageServer()
    home = Path(tempfile.mkdtemp(prefix="optiinfra-fuzz-"))
    cfg = load_settings({"OPTIINFRA_HOME": str(home), "VULTR_API_KEY": "fuzz-key-1234",
                         "VULTR_API_URL": server.url, "VULTR_MAX_RPS": "100000"})

    def account(bodies) -> None:
        server.serve(bodies)
        guarded(lambda _: vf.collect_everything(cfg), None)

    try:
        given(vf.account_bodies)(settings(max_examples=accounts, **quick)(account))()
    finally:
        server.close()
        shutil.rmtree(home, ignore_errors=True)
    first = f" (first: {crashes[0]})" if crashes else ""
    return (f"fuzzing     {len(vf.PARSERS)} parsers, {parsed} generated responses "
            f"(~{parsed // len(vf.PARSERS)} each): {len(crashes)} crashes; "
            f"{counted['n'] - parsed} whole accounts through the collector over HTTP{first}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=20.0, help="seconds Redis/PostgreSQL stay down")
    parser.add_argument("--fuzz-examples", type=int, default=3000, help="per parser")
    parser.add_argument("--fuzz-accounts", type=int, default=300)
    parser.add_argument("--only", default="schedules,kill,redis,postgres,fuzz")
    args = parser.parse_args()
    only = set(args.only.split(","))
    lab = Lab() if only - {"fuzz"} else None
    try:
        if "schedules" in only:
            print(scenario_schedules(lab), flush=True)
        if "kill" in only:
            print(scenario_kills(lab), flush=True)
        if "redis" in only:
            print(scenario_redis(lab, args.outage), flush=True)
        if "postgres" in only:
            print(scenario_postgres(lab, args.outage), flush=True)
    finally:
        if lab is not None:
            lab.close()
    if "fuzz" in only:
        print(scenario_fuzz(args.fuzz_examples, args.fuzz_accounts), flush=True)


if __name__ == "__main__":
    main()
