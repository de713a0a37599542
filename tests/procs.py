"""Real processes for fault tests and bench/faults.py: our own Redis, consumer processes.

Every consumer gets its own OPTIINFRA_HOME (chDB allows one process per data path) and
shares REDIS_URL and DATABASE_URL with the others.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from services import free_port, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
CLI = [sys.executable, "-m", "optiinfra_tui.cli"]
HUEY_CONSUMER = [str(Path(sys.executable).parent / "huey_consumer"), "huey_config.huey",
                 "-w", "2", "-k", "thread"]


class RedisServer:
    """A redis-server on a free port with an append-only file, so tasks survive a restart."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_until(self.ping, 10):
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    def ping(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Consumer:
    """One consumer process: `optiinfra-tui --headless` or `huey_consumer huey_config.huey`."""

    def __init__(self, kind: str, env: dict, home: Path, workers: int = 2,
                 extra: tuple[str, ...] = ()) -> None:
        self.kind, self.workers, self.extra = kind, workers, extra
        self.home = Path(home)
        self.env = dict(env, OPTIINFRA_HOME=str(self.home))
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout_path(self) -> Path:
        return self.home / f"stdout-{self.starts}.txt"

    def start(self) -> Consumer:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # as the program makes it
        self.starts += 1
        if self.kind == "headless":
            cmd = CLI + ["--headless", "--workers", str(self.workers), *self.extra]
        else:
            cmd = HUEY_CONSUMER[:3] + [str(self.workers), *HUEY_CONSUMER[4:], *self.extra]
        with open(self.stdout_path, "w") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.home)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is cleaned up."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int | None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None

    def printed(self) -> str:
        """What it wrote to stdout and stderr, every start."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.home.glob("stdout-*")))

    def logged(self) -> str:
        """Its log file in OPTIINFRA_HOME (huey_consumer writes none)."""
        log = self.home / "optiinfra.log"
        return log.read_text(errors="replace") if log.exists() else ""


def worker_env(base: dict, **extra) -> dict:
    """An environment without the caller's own backends or keys, plus `extra`."""
    env = {k: v for k, v in base.items()
           if not k.startswith(("VULTR_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL",
                                "OPTIINFRA_"))}
    env["PROVIDER_CHECK_INTERVAL"] = "0"  # no API requests the test didn't ask for
    env.update({k: str(v) for k, v in extra.items()})
    return env


def beating_pids() -> set[int]:
    """Pids of consumers with a fresh heartbeat (the caller connected the history store)."""
    from optiinfra_tui.storage.history import HEARTBEAT_STALE_AFTER, WorkerHeartbeat, utcnow

    try:
        return {hb.pid for hb in WorkerHeartbeat.select().where(
            WorkerHeartbeat.beat_at >= utcnow() - HEARTBEAT_STALE_AFTER)}
    except Exception:  # the history store is down: nobody is known to beat
        return set()


def wait_for_heartbeats(consumers: list[Consumer], timeout: float = 90) -> bool:
    return bool(wait_until(lambda: {c.pid for c in consumers} <= beating_pids(), timeout, 0.2))


def stop_all(consumers: list[Consumer], timeout: float = 30) -> None:
    """SIGTERM to all at once, then wait for each (one SIGTERM: a second skips the wait)."""
    for c in consumers:
        if c.alive():
            c.proc.send_signal(signal.SIGTERM)
    for c in consumers:
        if c.proc is not None:
            try:
                c.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                c.kill()


def show(consumers: list[Consumer], chars: int = 4000) -> None:
    """Print the end of each consumer's output (pytest shows it when a test fails)."""
    for c in consumers:
        print(f"----- {c.kind} {c.home.name} (exit {c.proc.returncode if c.proc else None})")
        print(c.printed()[-chars:])
        print(c.logged()[-chars:])


_WITHOUT = """
import sys

class Without:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Without())
from optiinfra_tui.cli import main
main(sys.argv[1:])
"""


def cli_without(*modules: str) -> list[str]:
    """The CLI in a process where `modules` can't be imported, as after installing without
    their extra (they stay installed here)."""
    return [sys.executable, "-c", _WITHOUT.format(modules=modules)]
