"""A local AWS for the tests: moto's server (Cost Explorer, S3, STS) on a free port, and a small
proxy in front of its Cost Explorer that records requests and can throttle or deny them.

`aws` (function scope) resets moto, sets fake credentials and gives the variables that point
botocore at it: `make_env(**aws.env)`. Cost Explorer answers are injected in order through
moto's /moto-api/static/ce/cost-and-usage-results (a request body seen before gets the same
answer again).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aws_truth import totals
from services import free_port

from optiinfra_tui.rows import COST_LINES, PENDING_CHARGES
from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import collection, runs
from optiinfra_tui.worker.runtime import Runtime

TODAY = date(2026, 3, 10)  # the day the collector thinks it is, unless a test moves `clock`
FEB, MAR = date(2026, 2, 1), date(2026, 3, 1)
_KEY_RE = re.compile(r"Credential=([A-Z0-9]+)/")


@dataclass
class CeRequest:
    """One Cost Explorer request as the proxy saw it."""

    target: str
    body: dict
    key_id: str


@dataclass
class CeProxy:
    """Forwards to moto; answers the first `throttle` requests with a ThrottlingException, and
    requests signed by a key in `deny` with an AccessDeniedException, as Cost Explorer does."""

    upstream: int
    throttle: int = 0
    deny: set[str] = field(default_factory=set)
    unavailable: int = 0
    requests: list[CeRequest] = field(default_factory=list)

    def start(self) -> str:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = _KEY_RE.search(self.headers.get("Authorization", ""))
                seen = CeRequest(self.headers.get("X-Amz-Target", ""),
                                 json.loads(body or b"{}"), key[1] if key else "")
                with proxy._lock:
                    proxy.requests.append(seen)
                    throttled = proxy.throttle > 0
                    proxy.throttle -= throttled
                    missing = proxy.unavailable > 0 and not throttled
                    proxy.unavailable -= missing
                if seen.key_id in proxy.deny:
                    return self._error("AccessDeniedException",
                                       "User: arn:aws:iam::123456789012:user/readonly is not "
                                       "authorized to perform: ce:GetCostAndUsage on resource: "
                                       "arn:aws:ce:us-east-1:123456789012:/GetCostAndUsage")
                if throttled:
                    return self._error("ThrottlingException", "Rate exceeded")
                if missing:
                    return self._error("DataUnavailableException",
                                       "Data is not available. Please try to adjust the time "
                                       "period.")
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body, headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _error(self, code: str, message: str) -> None:
                data = json.dumps({"__type": code, "message": message}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-ErrorType", code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def periods(self) -> list[tuple[str, str]]:
        """(Start, End) of each GetCostAndUsage request, in order."""
        return [(r.body["TimePeriod"]["Start"], r.body["TimePeriod"]["End"])
                for r in self.requests if r.target.endswith("GetCostAndUsage")]


class LocalAws:
    """moto's server plus the Cost Explorer proxy, for one test."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.key_id = "AKIA" + secrets.token_hex(8).upper()
        self.secret = "sk-" + secrets.token_urlsafe(30)
        self.proxy = CeProxy(port)
        self.ce_url = self.proxy.start()

    @property
    def env(self) -> dict[str, str]:
        """Variables for make_env: the default customer's keys and our endpoints."""
        return {"AWS_ACCESS_KEY_ID": self.key_id, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.url, "AWS_ENDPOINT_URL_COST_EXPLORER": self.ce_url,
                "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def _post(self, path: str, doc: dict | None = None) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("POST", path, json.dumps(doc or {}).encode(),
                     {"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        conn.close()
        assert answer.status in (200, 201), f"moto {path}: HTTP {answer.status}"

    def reset(self) -> None:
        self._post("/moto-api/reset")

    def inject_ce(self, pages: list[dict]) -> None:
        """Queue GetCostAndUsage answers: each new request body takes the next one."""
        self._post("/moto-api/static/ce/cost-and-usage-results",
                   {"results": [json.loads(_to_json(p)) for p in pages]})

    def s3(self):
        """A botocore S3 client on moto (the tests' own, not the collector's)."""
        import botocore.session

        return botocore.session.Session().create_client(
            "s3", region_name="us-east-1", endpoint_url=self.url,
            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret)

    def close(self) -> None:
        self.proxy.stop()


def _to_json(value: object) -> str:
    return json.dumps(value, default=lambda v: str(v) if isinstance(v, Decimal) else None)


@pytest.fixture(scope="session")
def moto_port() -> Iterator[int]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip('moto[server] is not installed (pip install -e ".[test]")')
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield port
    server.stop()


@pytest.fixture
def aws(moto_port, monkeypatch) -> Iterator[LocalAws]:
    # botocore's default chain must find nothing of the machine's (no ~/.aws, no instance
    # metadata service: nothing leaves this machine).
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    local = LocalAws(moto_port)
    local.reset()
    yield local
    local.close()


# --- running AWS collections and reading back what they stored ---------------------------


@pytest.fixture
def clock(monkeypatch) -> list[date]:
    """The day the collector thinks it is: set `clock[0]`."""
    from optiinfra_tui.collectors.aws.collector import AwsCollector

    days = [TODAY]
    monkeypatch.setattr(AwsCollector, "clock", staticmethod(lambda: days[0]))
    return days


@pytest.fixture
def runtime(make_env, aws):
    made = []

    def make(**extra) -> Runtime:
        rt = Runtime(load_settings(make_env(**aws.env, **extra)))
        rt.history()
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def collect(rt: Runtime, types: tuple[str, ...] = ("cost",)):
    """One run through every attempt, in this process (what `collect --inline` does)."""
    run = runs.create_run(rt.settings.default_customer_id, "aws", types, "cli",
                          max_attempts=rt.settings.max_retries + 1)
    return collection.run_inline(rt, run.id)


def stored(rt: Runtime) -> dict:
    """Live rows' sums of billed and effective cost, and counts, by (day, service, currency)."""
    out: dict = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    customer = rt.settings.default_customer_id
    for table in (COST_LINES, PENDING_CHARGES):
        for row in rt.metrics().read_rows(table, customer, "aws"):
            k = (row.charge_period_start.date(), row.service_name, row.billing_currency)
            out[k][0] += row.billed_cost
            out[k][1] += row.effective_cost
            out[k][2] += 1
    return {k: tuple(v) for k, v in out.items()}


def by_day_and_service(truth) -> dict:
    return totals(truth, lambda day, service, currency: (day, service, currency))


def reported_by_day(rt: Runtime) -> dict[tuple[str, str], Decimal]:
    """What `costs --by day` shows for this customer: (day, currency) -> total."""
    return {(t.key, t.currency): t.total for t in rt.metrics().costs(
        by="day", customer_id=rt.settings.default_customer_id)}


def by_day(truth) -> dict[tuple[str, str], Decimal]:
    """The truth's billed cost per (day, currency), as `reported_by_day` keys it."""
    return {k: v[0] for k, v in totals(
        truth, lambda day, service, currency: (day.isoformat(), currency)).items()}


def live_rows(rt: Runtime) -> list:
    customer = rt.settings.default_customer_id
    return (rt.metrics().read_rows(COST_LINES, customer, "aws")
            + rt.metrics().read_rows(PENDING_CHARGES, customer, "aws"))
