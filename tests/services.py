"""Real services for the tests, started by the tests: Redis (pytest-redis), PostgreSQL, chDB.

PostgreSQL refuses to run as root, and CI runs as root, so it is started from its binaries
here (initdb + pg_ctl, as the `postgres` user when we are root) instead of pytest-postgresql.
Where a binary is missing the test skips, unless OPTIINFRA_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pytest_redis import factories

REQUIRE = os.environ.get("OPTIINFRA_REQUIRE_SERVICES") == "1"


def missing(what: str) -> None:
    if REQUIRE:
        pytest.fail(f"{what} is required (OPTIINFRA_REQUIRE_SERVICES=1) but missing")
    pytest.skip(f"{what} not available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


redis_server = factories.redis_proc(port=None, executable=shutil.which("redis-server") or
                                    "/usr/bin/redis-server")


@pytest.fixture(scope="session")
def redis_base_url(request) -> str:
    if not shutil.which("redis-server") and not os.path.exists("/usr/bin/redis-server"):
        missing("redis-server")
    proc = request.getfixturevalue("redis_server")
    return f"redis://{proc.host}:{proc.port}"


_redis_db = itertools.count(1)


@pytest.fixture
def redis_url(redis_base_url: str) -> str:
    """A Redis database of its own for each test (our own server: nothing else lives there)."""
    import redis

    db = next(_redis_db) % 16  # pyproject's redis_db_count
    url = f"{redis_base_url}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


def _pg_bindir() -> str | None:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(cand, "initdb")):
            return cand
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temp dir, on a free port."""

    def __init__(self, root: Path) -> None:
        self.bindir = _pg_bindir()
        self.datadir = root / "pgdata"
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.datadir.parent, "postgres")
        r = self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                      "--no-sync", "-E", "UTF8")
        if r.returncode:
            raise RuntimeError(f"initdb failed: {r.stderr}")
        self.start_again()

    def start_again(self) -> None:
        opts = (f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off -c max_connections=200")
        r = self._run("pg_ctl", "-D", str(self.datadir), "-o", opts, "-w", "-t", "60",
                      "-l", str(self.datadir / "server.log"), "start")
        if r.returncode:
            raise RuntimeError(f"pg_ctl start failed: {r.stderr} {r.stdout}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
            cur.execute(f'CREATE DATABASE "{dbname}"')
        conn.close()
        return self.url(dbname)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    if _pg_bindir() is None:
        missing("PostgreSQL server binaries (initdb, pg_ctl)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        missing("runuser (PostgreSQL can't run as root)")
    root = pg_root()
    server = PostgresServer(root / "cluster")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def pg_root() -> Path:
    """A folder the `postgres` user can reach: outside pytest's basetemp, which pytest keeps
    (and re-sets, whenever another session starts) at mode 700."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="optiinfra-pg-"))
    os.chmod(root, 0o755)
    return root


_pg_db = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database of our own for each test."""
    return postgres_server.create_database(f"optiinfra_test_{os.getpid()}_{next(_pg_db)}")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll until predicate() is truthy; returns its value or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


@pytest.fixture(scope="session")
def chdb_url(tmp_path_factory) -> str:
    """One chDB engine for the whole test process (chDB allows one per process)."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


_customer = itertools.count(1)


def config_env(tmp_path: Path, toml: str) -> dict[str, str]:
    """load_settings' environment for data dir `tmp_path` and a config file (c.toml) of `toml`."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    return {"OPTIINFRA_HOME": str(tmp_path), "OPTIINFRA_CONFIG": str(cfg)}


@pytest.fixture
def make_env(tmp_path, chdb_url):
    """An environment for load_settings(): its own data dir and customer id, shared chDB."""

    # No schedules unless a test asks: a slot falling due mid-test would add a run of its own.
    no_schedules = tmp_path / "no-schedules.toml"
    no_schedules.write_text("schedules = []\n")

    def make(**extra: str) -> dict[str, str]:
        env = {
            "OPTIINFRA_HOME": str(tmp_path / "home"),
            "OPTIINFRA_CONFIG": str(no_schedules),
            "CLICKHOUSE_URL": chdb_url,
            "DEFAULT_CUSTOMER_ID": f"cust{os.getpid()}x{next(_customer)}",
            "RETRY_DELAY": "0.05",
            # Nor timed provider checks: each is a request the test didn't make.
            "PROVIDER_CHECK_INTERVAL": "0",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        }
        env.update({k: str(v) for k, v in extra.items()})
        return {k: v for k, v in env.items() if v != ""}

    return make
