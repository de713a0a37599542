"""An embedded worker pool: Huey consumer threads plus the agent, started and stopped by a host.

Both the dashboard and headless mode run one; neither hands its signals to Huey.
"""

from __future__ import annotations

import logging

from optiinfra_tui.storage import history
from optiinfra_tui.worker.agent import ConsumerAgent
from optiinfra_tui.worker.queue import EmbeddedConsumer
from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.pool")


class WorkerPool:
    def __init__(self, rt: Runtime, workers: int, kind: str) -> None:
        self.rt = rt
        self.workers = workers
        # With 0 workers the process only watches: no consumer, but still a heartbeat.
        self.consumer = EmbeddedConsumer(rt.huey, workers=workers) if workers else None
        self.agent = ConsumerAgent(rt, kind, threads=workers, run_schedules=workers > 0,
                                   metrics_health=workers > 0)

    def start(self) -> None:
        if self.consumer:
            # Workers only where collections can run: StoreOwned when another process owns
            # the chDB data dir, rather than tasks failing there one by one.
            self.rt.claim_store(self.agent.kind)
            self.consumer.start()
            for i in range(self.workers):
                self.rt.activity.register(f"Worker-{i + 1}")
        self.agent.start()

    def in_flight(self) -> int:
        return len(self.rt.huey._tasks_in_flight) if self.consumer else 0

    def stop(self, timeout: float) -> bool:
        """Stop taking tasks and wait up to `timeout` s for those in flight; True if all ended."""
        done = True
        if self.consumer:
            done = self.consumer.stop(graceful=True, timeout=timeout)
            # Ends of the last tasks may still wait for their group commit.
            done = history.flush_writes(timeout) and done
        self.agent.stop()
        return done
