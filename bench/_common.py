"""Shared bench helpers: our own Redis and PostgreSQL, statistics, RSS, printing figures.

The benchmarks print figures and never assert: a missed target is a number to read.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # services.PostgresServer lives with the tests

from services import free_port, wait_until  # noqa: E402,F401  (one of each, with the tests)

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def tempdir(prefix: str) -> Path:
    """A temp dir PostgreSQL (run as the postgres user when we are root) can enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


class Redis:
    """A throwaway redis-server: no persistence, its own port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> Redis:
        import redis

        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--logfile", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                return redis.Redis(port=self.port, socket_timeout=1).ping()
            except redis.RedisError:
                return False

        if not wait_until(up, 10):
            raise RuntimeError(f"redis-server did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


class Postgres:
    """tests/services.PostgresServer in a temp dir, with one database made for us."""

    def __init__(self) -> None:
        from services import PostgresServer

        self.root = tempdir("bench-pg-")
        self.server = PostgresServer(self.root / "cluster")

    def start(self, dbname: str = "optiinfra_bench") -> str:
        self.server.start()
        return self.server.create_database(dbname)

    @property
    def pid(self) -> int:
        """The postmaster's pid."""
        return int((self.server.datadir / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank on sorted values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> tuple[float, float, float]:
    """Median, min and max of per-round figures."""
    return statistics.median(values), min(values), max(values)


def fmt(values: list[float], unit: str = "", digits: int = 2) -> str:
    """'median [min-max] unit' of per-round figures."""
    med, lo, hi = summary(values)
    return f"{med:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]{unit and ' ' + unit}"


def rss_mb(pid: int | None = None) -> float:
    """Current resident set size in MB (VmRSS)."""
    return _status_kb(pid, "VmRSS") / 1024


def file_rss_mb(pid: int | None = None) -> float:
    """The file-backed part of the resident set in MB (RssFile: mapped code, chDB's library)."""
    return _status_kb(pid, "RssFile") / 1024


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident set size in MB (VmHWM)."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int | None, field: str) -> float:
    path = f"/proc/{pid or 'self'}/status"
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Direct children of a process (e.g. PostgreSQL's backends)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live children (PostgreSQL: postmaster + backends)."""
    return cpu_seconds(pid) + sum(cpu_seconds(c) for c in children(pid))


def figure(name: str, value: str, target: str = "", met: bool | None = None) -> None:
    """One line of results: what, value, target and whether it is met."""
    verdict = "" if met is None else ("  met" if met else "  MISSED")
    tail = f"  (target {target}){verdict}" if target else ""
    print(f"  {name:<46} {value}{tail}", flush=True)


def save_results(name: str, data) -> None:
    """Write a bench's figures as JSON where bench/run.py asked for them (BENCH_RESULTS_DIR)."""
    import json

    where = os.environ.get("BENCH_RESULTS_DIR")
    if where:
        Path(where, f"{name}.json").write_text(json.dumps(data, indent=1, default=str))


def machine() -> str:
    """A one-line description of this machine, for the README table."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = _status_kb_meminfo()
    return (f"{os.cpu_count()} cores ({model or 'unknown CPU'}), {mem / 1024 / 1024:.0f} GB RAM, "
            f"Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")


def _status_kb_meminfo() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return float(line.split()[1])
    return 0.0
