"""Which process owns the embedded store of a data dir, and so runs its collections.

chDB opens a data path in one process only, so when the metrics store is chDB one process
(the dashboard, headless mode or a `huey_consumer`) owns the data dir: it holds an exclusive
flock on `owner.lock` there, with its pid and host written in it, for as long as it runs.
A lock dies with its process (kill -9 included), so a file left behind never blocks anyone.
Other processes watch (the dashboard) or refuse to start (headless, `huey_consumer`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from optiinfra_tui.datadir import FILE_MODE, make_dir
from optiinfra_tui.errors import ConfigError

OWNER_FILE = "owner.lock"
# A process asking who owns the dir holds a shared lock for microseconds; a claim that meets
# one tries again this many times before it believes the dir is taken.
CLAIM_TRIES = 10
CLAIM_PAUSE = 0.05


@dataclass(frozen=True)
class Owner:
    """The process that holds a data dir's owner lock."""

    pid: int | None
    host: str
    kind: str  # dashboard | headless | huey_consumer | ...

    def describe(self) -> str:
        """'pid 1234 on host-x (headless)'."""
        pid = f"pid {self.pid}" if self.pid else "an unknown pid"
        return f"{pid} on {self.host}" + (f" ({self.kind})" if self.kind else "")

    @property
    def is_this_process(self) -> bool:
        return self.pid == os.getpid() and self.host == socket.gethostname()


class StoreOwned(ConfigError):
    """Another process owns the data dir's embedded store."""

    def __init__(self, home: Path, owner: Owner) -> None:
        super().__init__(
            f"The data dir {home} is in use by {owner.describe()}: in embedded mode (chDB) "
            "one process runs the collections. Stop that one first, or share a ClickHouse "
            "server between processes (CLICKHOUSE_URL=http://user:password@host:8123/db, "
            "plus REDIS_URL and DATABASE_URL for other hosts).")
        self.home, self.owner = home, owner


class OwnerClaim:
    """A held owner lock; released by `release()` or when the process ends."""

    def __init__(self, path: str, fd: int, owner: Owner) -> None:
        self.path, self.fd, self.owner = path, fd, owner
        self.refs = 1


_held: dict[str, OwnerClaim] = {}  # owner file path -> this process's claim
_held_lock = threading.Lock()


def needs_owner(settings) -> bool:
    """True when the metrics store is chDB: then one process per data dir does the work."""
    return settings.clickhouse_url.startswith("chdb")


def _path(home: Path) -> str:
    return os.path.join(os.path.realpath(home), OWNER_FILE)


def holds(home: Path) -> bool:
    """Whether this process owns `home`."""
    with _held_lock:
        return _path(home) in _held


def claim_embedded(home: Path, kind: str) -> OwnerClaim:
    """Own `home` until `release()` or the process ends; StoreOwned names who has it instead.

    Re-entrant within a process: every claim must be released once.
    """
    path = _path(home)
    with _held_lock:
        claim = _held.get(path)
        if claim is not None:
            claim.refs += 1
            return claim
        try:
            make_dir(os.path.dirname(path))
            fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise ConfigError(f"The data dir {home} can't be used ({exc.strerror}). Fix its "
                              "permissions, or set OPTIINFRA_HOME elsewhere.") from None
        for attempt in range(CLAIM_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                other = _read(fd)
                if attempt == CLAIM_TRIES - 1 or (other is not None and _alive(other)):
                    os.close(fd)
                    raise StoreOwned(Path(home), other or Owner(None, "?", "")) from None
                # The file names nobody alive: only a reader's shared lock, or an owner that
                # hasn't written itself yet. Try again shortly.
                time.sleep(CLAIM_PAUSE)
        owner = Owner(os.getpid(), socket.gethostname(), kind)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": owner.pid, "host": owner.host, "kind": kind})
                       + "\n").encode(), 0)
        claim = _held[path] = OwnerClaim(path, fd, owner)
        return claim


def release(claim: OwnerClaim) -> None:
    """Give one claim back; the lock goes when the last claim of this process does."""
    with _held_lock:
        claim.refs -= 1
        if claim.refs <= 0 and _held.get(claim.path) is claim:
            del _held[claim.path]
            os.close(claim.fd)  # releases the flock


def embedded_owner(home: Path) -> Owner | None:
    """The process that owns `home` (this one included), or None when no process does."""
    path = _path(home)
    with _held_lock:
        claim = _held.get(path)
        if claim is not None:
            return claim.owner
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # no owner file: nobody ever owned this dir
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            # Held: the owner wrote who it is right after taking the lock.
            for _ in range(CLAIM_TRIES):
                found = _read(fd)
                if found is not None:
                    return found
                time.sleep(CLAIM_PAUSE)
            return Owner(None, "?", "")
        return None
    finally:
        os.close(fd)  # releases the shared lock, if taken


def _alive(owner: Owner) -> bool:
    """Whether the process the file names still runs (always assumed for another host's)."""
    if owner.host != socket.gethostname():
        return True
    if not owner.pid or owner.pid == os.getpid():
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(fd: int) -> Owner | None:
    try:
        doc = json.loads(os.pread(fd, 4096, 0).decode(errors="replace"))
        return Owner(int(doc["pid"]), str(doc["host"]), str(doc.get("kind", "")))
    except (ValueError, KeyError, TypeError, OSError):
        return None  # empty or half-written
