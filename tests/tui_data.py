"""Seeded history and stand-ins for the dashboard tests, screenshots and bench.

Timestamps are fixed (FROZEN_NOW) so snapshots and screenshots are identical on every run.
"""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from optiinfra_tui.storage.history import (
    AlertState,
    CollectionRun,
    RunAttempt,
    WorkerHeartbeat,
    db,
)
from optiinfra_tui.storage.queries import CostSummary, CostTotal
from optiinfra_tui.tui.source import Source
from optiinfra_tui.worker.health import Health

FROZEN_NOW = datetime(2026, 11, 20, 12, 0, 0)
FROZEN_TODAY = FROZEN_NOW.date()
KEY_MESSAGE = ("VULTR_API_KEY is not set: the vultr API key for customer 'default_customer' is "
               "missing. Export VULTR_API_KEY=<your vultr API key> where the workers run.")


# The schedule the pictures show: asked for by name, so no test gets one by default.
SHOWN_SCHEDULE = '[[schedules]]\nname = "vultr-cost"\ndata_types = ["cost"]\ninterval = 900\n'


def env_for(home: Path, schedules: str = "schedules = []\n", **extra: str) -> dict[str, str]:
    """A complete environment for load_settings: a fresh data dir, no key unless given, and
    only the schedules asked for (none by default: a slot falling due would add a run)."""
    home = Path(home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the program makes it
    config = home / "schedules.toml"
    config.write_text(schedules)
    env = {"OPTIINFRA_HOME": str(home), "OPTIINFRA_CONFIG": str(config), "MAX_RETRIES": "2",
           "RETRY_DELAY": "1", "PROVIDER_CHECK_INTERVAL": "0"}
    env.update(extra)
    return env


def _run(i: int, now: datetime, status: str, **kw) -> dict:
    queued = now - timedelta(seconds=30 * i + 5)
    started = queued + timedelta(seconds=1)
    took = kw.pop("duration_ms", 800 + (i * 137) % 2400)
    final = status in ("success", "failed", "canceled")
    row = dict(task_id=f"task-{i:06d}", customer_id=kw.pop("customer_id", "default_customer"),
               provider="vultr", data_types=kw.pop("data_types", "cost"),
               trigger=kw.pop("trigger", "schedule"), status=status,
               attempt=kw.pop("attempt", 1 if status != "queued" else 0), max_attempts=3,
               metrics_collected=kw.pop("rows", 40 + i % 17 if status == "success" else 0),
               error_kind=None, error_message=None, queued_at=queued,
               started_at=started if status != "queued" else None,
               finished_at=started + timedelta(milliseconds=took) if final else None,
               duration_ms=took if final else None,
               worker="ops-1:4242:Worker-1" if status != "queued" else None,
               next_attempt_at=None, retry_of=None, schedule=None)
    row.update(kw)
    return row


def seed_bulk(n: int, now: datetime = FROZEN_NOW, batch: int = 1000) -> None:
    """n runs, oldest first, ~1 in 9 failed: a fast bulk insert for paging benchmarks."""
    rng = random.Random(1)
    with db.atomic():
        for start in range(0, n, batch):
            rows = []
            for k in range(start, min(n, start + batch)):
                i = n - k
                failed = rng.random() < 0.11
                rows.append(_run(i, now, "failed" if failed else "success",
                                 **({"error_kind": "transient", "error_message": "HTTP 503"}
                                    if failed else {})))
            CollectionRun.insert_many(rows).execute()


def seed_alert(now: datetime = FROZEN_NOW) -> None:
    """An alert firing for five minutes: Vultr refusing the default customer's key."""
    AlertState.create(
        alert="ops", condition="failures:vultr:default_customer", active=True,
        episode=f"{0:020d}", since=now - timedelta(minutes=5), updated_at=now,
        summary="vultr for customer default_customer: 3 scheduled runs failed in a row and "
                "none has succeeded yet; the last, run 52, with auth: Vultr refused the API "
                "key (401): check VULTR_API_KEY.")


def seed_showcase(now: datetime = FROZEN_NOW, extra: int = 40) -> dict[str, int]:
    """A realistic mix: successes, a failed run with its attempts, retrying, queued, running."""
    seed_bulk(extra, now - timedelta(minutes=25))
    ids: dict[str, int] = {}
    ids["config_failed"] = CollectionRun.insert(_run(
        9, now, "failed", trigger="manual", attempt=1, error_kind="config",
        error_message=KEY_MESSAGE, duration_ms=42)).execute()
    RunAttempt.insert(run_id=ids["config_failed"], attempt=1, status="failed",
                      worker="ops-1:4242:Worker-1", started_at=now - timedelta(seconds=274),
                      finished_at=now - timedelta(seconds=274) + timedelta(milliseconds=42),
                      duration_ms=42, rows=0, error_kind="config",
                      error_message=KEY_MESSAGE).execute()
    ids["transient_failed"] = CollectionRun.insert(_run(
        7, now, "failed", attempt=3, error_kind="transient", customer_id="acme",
        error_message="Vultr answered 503 Service Unavailable (gave up after 3 attempts)",
        rows=12)).execute()
    for a in (1, 2, 3):
        t = now - timedelta(seconds=215 - 20 * a)
        RunAttempt.insert(run_id=ids["transient_failed"], attempt=a,
                          status="failed" if a == 3 else "retrying", worker="ops-2:777:Worker-2",
                          started_at=t, finished_at=t + timedelta(seconds=2), duration_ms=2000,
                          rows=12 if a == 1 else 0, error_kind="transient",
                          error_message="Vultr answered 503 Service Unavailable").execute()
    ids["retrying"] = CollectionRun.insert(_run(
        5, now, "retrying", attempt=1, customer_id="acme", error_kind="transient",
        error_message="Vultr answered 429 Too Many Requests",
        next_attempt_at=now + timedelta(seconds=45))).execute()
    ids["success"] = CollectionRun.insert(_run(3, now, "success", trigger="manual",
                                               data_types="cost,resource", rows=128)).execute()
    ids["running"] = CollectionRun.insert(_run(2, now, "running", trigger="manual")).execute()
    ids["queued"] = CollectionRun.insert(_run(1, now, "queued", trigger="cli")).execute()
    seed_heartbeat(now)
    return ids


# AWS beside Vultr: its schedule, the runs it made, and each provider's health.
AWS_SCHEDULES = SHOWN_SCHEDULE + (
    '[[schedules]]\nname = "aws-cost"\nprovider = "aws"\ndata_types = ["cost"]\n'
    'interval = 21600\n'
    '[customers.acme.aws]\naccess_key_id_env = "ACME_AWS_ACCESS_KEY_ID"\n'
    'secret_access_key_env = "ACME_AWS_SECRET_ACCESS_KEY"\n')
AWS_DENIED = ("Cost Explorer GetCostAndUsage: AccessDeniedException. The credentials from "
              "ACME_AWS_ACCESS_KEY_ID / ACME_AWS_SECRET_ACCESS_KEY lack the IAM permission "
              "ce:GetCostAndUsage: grant it to that user or role (see the README's IAM policy).")
AWS_HEALTH = [Health("aws:default_customer", True, 41.0),
              Health("aws:acme", False, None, AWS_DENIED),
              Health("vultr:default_customer", True, 84.0)]


def seed_aws_runs(now: datetime = FROZEN_NOW) -> dict[str, int]:
    """AWS runs among the showcase's: a scheduled cost run, an export, a denied key."""
    ids = {}
    ids["aws_cost"] = CollectionRun.insert(_run(
        4, now - timedelta(seconds=3), "success", provider="aws", rows=247, requests=10,
        schedule="aws-cost")).execute()
    ids["aws_export"] = CollectionRun.insert(_run(
        6, now - timedelta(seconds=3), "success", provider="aws", data_types="cost,export",
        trigger="manual", rows=18250, requests=1)).execute()
    ids["aws_denied"] = CollectionRun.insert(_run(
        8, now - timedelta(seconds=3), "failed", provider="aws", customer_id="acme",
        error_kind="auth", error_message=AWS_DENIED, requests=1, duration_ms=310)).execute()
    return ids


# All four providers: each one's health and a run of each beside the showcase's.
FOUR_HEALTH = [Health("aws:default_customer", True, 41.0),
               Health("azure:default_customer", True, 212.0),
               Health("gcp:default_customer", True, 96.0),
               Health("vultr:default_customer", True, 84.0)]


def seed_cloud_runs(now: datetime = FROZEN_NOW) -> None:
    """A successful cost run of AWS, Azure and GCP among the showcase's Vultr ones."""
    for i, (provider, rows, requests) in enumerate((("aws", 247, 10), ("azure", 274, 5),
                                                    ("gcp", 261, 3)), start=4):
        CollectionRun.insert(_run(2 * i, now - timedelta(seconds=3), "success",
                                  provider=provider, rows=rows, requests=requests,
                                  schedule=f"{provider}-cost")).execute()


def seed_heartbeat(now: datetime = FROZEN_NOW) -> None:
    """Another consumer sharing the queue: one busy thread, one idle."""
    threads = [
        {"name": "Worker-1", "state": "busy", "task": "vultr/default_customer cost",
         "run_id": 2, "since": (now - timedelta(seconds=4)).isoformat(), "processed": 51,
         "failed": 3},
        {"name": "Worker-2", "state": "idle", "task": "", "run_id": None,
         "since": (now - timedelta(seconds=20)).isoformat(), "processed": 47, "failed": 2},
    ]
    WorkerHeartbeat.insert(consumer_id="ops-1:4242", host="ops-1", pid=4242, kind="headless",
                           threads=2, processed=98, failed=5, started_at=now - timedelta(hours=3),
                           beat_at=now - timedelta(seconds=2), state=json.dumps(threads)).execute()


class StubMetrics:
    """Fixed cost figures: for tests about the UI, not about ClickHouse."""

    def __init__(self, today: date = FROZEN_TODAY) -> None:
        self.today = today

    def spend_by_day_and_provider(self, days: int = 30, customer_id=None, today=None):
        today = today or self.today
        out = []
        for i in range(days):
            d = today - timedelta(days=days - 1 - i)
            out.append((d, "vultr", "USD", Decimal(20 + (i * 7) % 13) + Decimal("0.37")))
        return out

    def summary(self, today=None):
        today = today or self.today
        return [CostSummary("USD", Decimal("1830.40"), Decimal("96.10"), Decimal("412.58"),
                            today.replace(day=1), today, 512)]

    def costs(self, by: str = "provider", since=None):
        if by == "provider":
            return [CostTotal("vultr", "USD", Decimal("1830.40"), Decimal("96.10"), 512)]
        return [CostTotal(k, "USD", Decimal(v), Decimal(0), r, "vultr")
                for k, v, r in (("Vultr Cloud Compute", "1210.00", 300),
                                ("Block Storage", "330.40", 120), ("Load Balancer", "290.00", 92))]

    def close(self) -> None:
        pass


class OneCustomer:
    """A real metrics store read for one customer: tests sharing chDB don't see each other."""

    def __init__(self, store, customer_id: str) -> None:
        self.store, self.customer_id = store, customer_id

    def spend_by_day_and_provider(self, days: int = 30, today=None):
        return self.store.spend_by_day_and_provider(days, self.customer_id, today)

    def summary(self, today=None):
        return self.store.summary(today, self.customer_id)

    def costs(self, by: str = "provider", since=None):
        return self.store.costs(by, since, self.customer_id)

    def close(self) -> None:
        pass


class UnavailableMetrics:
    def __getattr__(self, name):
        def fail(*a, **k):
            raise ConnectionError("ClickHouse is unreachable at http://127.0.0.1:1")
        return fail


class FrozenSource(Source):
    """The real reads at a fixed time, with fixed latencies: for stable pictures."""

    def __init__(self, rt, metrics=None, now: datetime = FROZEN_NOW,
                 providers: list[Health] | None = None) -> None:
        super().__init__(rt, clock=lambda: now, metrics=lambda: metrics or StubMetrics())
        self.providers = providers or [Health("vultr:default_customer", True, 84.0)]

    def health(self, live: bool) -> list[Health]:
        fixed = {"queue": 0.4, "history": 0.3}
        real = [h if not h.ok else Health(h.name, True, fixed[h.name])
                for h in super().health(live) if h.name in fixed]
        return real + [Health("metrics", True, 12.5), *self.providers]
