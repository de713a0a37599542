"""The HTTP API's own figures: a trigger's round trip (POST to the queued answer) and a page
of runs, over real HTTP to uvicorn in this process, queue and history in SQLite.

    python bench/bench_api.py [--triggers 500]

Prints figures, asserts nothing. No consumer runs: this is the API and the enqueue, not a
collection.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import free_port, machine, wait_until  # noqa: E402

from optiinfra_tui import access  # noqa: E402
from optiinfra_tui.api.limits import TriggerLimit  # noqa: E402
from optiinfra_tui.api.server import ApiServer  # noqa: E402
from optiinfra_tui.settings import load_settings  # noqa: E402
from optiinfra_tui.worker.runtime import Runtime  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def settings_for(home: Path):
    (home / "c.toml").write_text("schedules = []\n")
    return load_settings({"OPTIINFRA_HOME": str(home), "OPTIINFRA_CONFIG": str(home / "c.toml"),
                          "OPTIINFRA_API_TOKEN": TOKEN, "CLICKHOUSE_URL": "http://127.0.0.1:1/x"})


def serve(home: Path, port: int) -> None:
    """The server side, in a process of its own (as under --headless): a client thread in the
    same process would share its GIL and add its switching to every figure."""
    settings = settings_for(home)
    server = ApiServer(Runtime(settings), "127.0.0.1", port, access.tokens(settings),
                       TriggerLimit(10**9))
    server.start()
    sys.stdin.read()  # until the bench closes it
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--triggers", type=int, default=500)
    parser.add_argument("--serve", nargs=2, metavar=("HOME", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    import httpx

    home = Path(tempfile.mkdtemp(prefix="optiinfra-bench-api-"))
    settings = settings_for(home)
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(home), str(port)],
                              stdin=subprocess.PIPE)
    body = {"customer_id": settings.default_customer_id, "provider": "vultr",
            "data_types": ["cost"], "async_mode": True}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:
            wait_until(lambda: _up(client), 30, 0.1)
            for _ in range(20):  # warm: connections, imports, the SQLite files
                client.post("/api/v1/collect/trigger", json=body).raise_for_status()
            took = []
            for _ in range(args.triggers):
                start = time.perf_counter()
                client.post("/api/v1/collect/trigger", json=body).raise_for_status()
                took.append((time.perf_counter() - start) * 1000)
            pages = []
            for _ in range(200):
                start = time.perf_counter()
                client.get("/api/v1/runs?limit=100").raise_for_status()
                pages.append((time.perf_counter() - start) * 1000)
    finally:
        server.communicate(timeout=30)
    print(machine())
    print(f"trigger round trip (POST to queued, SQLite queue and history), {args.triggers} in a "
          f"row: p50 {statistics.median(took):.2f} ms, p99 {quantile(took, 0.99):.2f} ms")
    print(f"GET /api/v1/runs?limit=100: p50 {statistics.median(pages):.2f} ms, "
          f"p99 {quantile(pages, 0.99):.2f} ms")


def _up(client) -> bool:
    import httpx

    try:
        return client.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
