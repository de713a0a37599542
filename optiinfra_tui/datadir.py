"""The data dir is private: every customer's costs are in it. Created 0700, our files in it
0600, and an existing one that other users can read gets a warning naming the fix.

Files that libraries create (chDB's store, SQLite's journals, a rotated log) follow the
process's umask, which `private_umask` sets at start-up.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600
# Ours, at the top of the data dir: what `open_to_others` looks at (not chDB's many files,
# which a recursive chmod fixes with the rest).
OWN_ENTRIES = ("history.db", "queue.db", "clickhouse", "optiinfra.log", "owner.lock",
               "tui.json", "cli-error.log")


def private_umask() -> None:
    """From now on, whatever this process creates is its user's alone (chDB's files too)."""
    old = os.umask(0o077)
    os.umask(old | 0o077)  # keep any stricter bits the user asked for


def make_dir(path: Path | str) -> Path:
    """`path` (and missing parents) created; the last one 0700 whatever the umask."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def create_file(path: Path | str) -> None:
    """Create `path` 0600 if it doesn't exist (a library then opens it and keeps its mode)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))


def write_file(path: Path | str, text: str) -> None:
    """Replace `path`'s content with `text`, creating it 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def open_to_others(home: Path) -> str | None:
    """A warning naming the fix when the data dir, or one of our files in it, grants other
    users any access; None when it is private (or doesn't exist yet)."""
    wide = []
    for path in (home, *(home / name for name in OWN_ENTRIES)):
        try:
            mode = path.lstat().st_mode
        except OSError:
            continue
        if mode & 0o077:
            wide.append(f"{path} is {stat.S_IMODE(mode):04o}")
    if not wide:
        return None
    shown = "; ".join(wide[:3]) + ("; ..." if len(wide) > 3 else "")
    if home.stat().st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        # /tmp, say: a chmod there would break every other user of it.
        return (f"the data dir {home} is a directory shared with other users ({shown}), so "
                "they can read every customer's costs. Set OPTIINFRA_HOME to a directory of "
                "its own.")
    return (f"the data dir {home} can be read by other users ({shown}), and every customer's "
            f"costs are in it. Fix it with: chmod -R go-rwx {shlex.quote(str(home))}")
