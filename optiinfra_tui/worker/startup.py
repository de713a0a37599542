"""Process-wide settings, made once by each entry point before it starts a thread.

`cli.main` (the dashboard, `--headless`, every command, `collect --inline`) and
`huey_config.py` call `prepare_process()`; nothing changes these settings afterwards. The
speed-ups are here because `bench/process_setup.py` showed they pay (figures in the README's
Performance notes); the umask because only it reaches the files chDB creates.
"""

from __future__ import annotations

import gc

# Young-generation collections every 10,000 net allocations instead of Python's 700: a
# collection allocates a JSON object and a row per line that die with their page, and with
# 700 the collector spent ~8% of an ingest's CPU scanning (and promoting) them.
YOUNG_GC_THRESHOLD = 10_000

_prepared = False


def prepare_process() -> None:
    """Apply the process-wide settings (idempotent); call before starting any thread."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    young, *older = gc.get_threshold()
    if young:  # 0: automatic collection was turned off; leave it so
        gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), *older)
    from optiinfra_tui.datadir import private_umask
    from optiinfra_tui.storage.clickhouse import keep_pyarrow_from_chdb

    keep_pyarrow_from_chdb()
    # chDB writes thousands of files into the data dir, with no say over their modes: only
    # the umask keeps them (and SQLite's journals, a rotated log) from other users.
    private_umask()
