"""A real local HTTP server speaking the Vultr v2 API shape, with seeded data and fault knobs.

Use it as a context manager (`with FakeVultr(invoices=3) as api: api.url, api.token`), through
the `fake_vultr` fixture, or as a script: `python tests/fake_vultr.py --port 8799`.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from local_server import LocalServer

MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 100

_PRODUCTS = [
    ("Vultr Cloud Compute", "hours", "{ip} ({ram} MB) [{label}]"),
    ("Load Balancer", "hours", "Load Balancer ({label})"),
    ("Block Storage", "hours", "Block Storage {size} GB [{label}]"),
    ("Snapshots", "hours", "Snapshot storage"),
    ("Bandwidth", "overage", "Bandwidth overage"),
]


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    t: float  # time.monotonic() when the request line was read
    path: str  # as sent, e.g. /v2/billing/invoices
    query: dict[str, str]
    status: int


def to_json(value: object) -> str:
    """JSON text in which a Decimal is written as the number it spells, e.g. 22.09."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


def _cents(n: int) -> Decimal:
    return Decimal(n).scaleb(-2)


def _month_start(d: datetime, months_back: int = 0) -> datetime:
    index = d.year * 12 + d.month - 1 - months_back
    return datetime(index // 12, index % 12 + 1, 1)


class FakeVultr(LocalServer):
    """Seeded Vultr account behind a ThreadingHTTPServer on 127.0.0.1."""

    def __init__(
        self,
        *,
        seed: int = 0,
        invoices: int = 5,
        items: int = 8,
        pending: int = 4,
        instances: int = 3,
        token: str | None = None,
        port: int = 0,
        now: datetime | None = None,
        retry_after: str | None = "0",
    ) -> None:
        self.token = token or "fake-vultr-" + secrets.token_hex(16)
        self.retry_after = retry_after  # Retry-After sent with injected 429/503; None: no header
        self.rate_limit_every = 0  # answer 429 to every k-th request (0: never)
        self._port = port
        self._rng = random.Random(seed)
        self._now = now or datetime.now(UTC).replace(tzinfo=None)
        self._lock = threading.Lock()
        self._seq = 0
        self._fail_left: float = 0
        self._fail_path: str | None = None
        self._malformed: dict[str, str] = {}
        self._repeat: set[str] = set()
        self.requests: list[Request] = []
        self._invoices: list[dict] = []  # newest first, as listed
        self._items: dict[str, list[dict]] = {}
        self._history: list[dict] = []
        for k in range(invoices):
            self._new_invoice(items, months_back=invoices - k)
        first = self._invoices[-1]["id"] if self._invoices else None
        if first is not None and len(self._items[str(first)]) >= 2:
            # Two identical lines on one invoice: two charges, not a duplicate.
            self._items[str(first)][1] = dict(self._items[str(first)][0])
            self._refresh_invoice_amount(str(first))
        month = _month_start(self._now)
        self._pending = [self._item(i, month, _month_start(self._now, -1)) for i in range(pending)]
        self._instances = [self._instance() for _ in range(instances)]

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeVultr:
        self._serve(ThreadingHTTPServer(("127.0.0.1", self._port), _Handler), "fake-vultr")
        return self

    def __enter__(self) -> FakeVultr:
        return self.start()

    @property
    def root(self) -> str:
        """http://127.0.0.1:PORT (no API prefix)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The base URL to use as VULTR_API_URL (ends in /v2)."""
        return self.root + "/v2"

    # --- what the server holds -------------------------------------------------------------

    def invoice_ids(self) -> list[str]:
        with self._lock:
            return [str(inv["id"]) for inv in self._invoices]

    def latest_invoice_id(self) -> str:
        with self._lock:
            return str(self._invoices[0]["id"])

    def invoice_items(self, invoice_id: str) -> list[dict]:
        with self._lock:
            return [dict(item) for item in self._items[str(invoice_id)]]

    def pending_charges(self) -> list[dict]:
        with self._lock:
            return [dict(item) for item in self._pending]

    def instances(self) -> list[dict]:
        with self._lock:
            return [dict(i) for i in self._instances]

    def billing_history(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._history]

    def account(self) -> dict:
        with self._lock:
            return self._account()

    def total_cost(self, include_pending: bool = True) -> Decimal:
        """Exact sum of every invoice line's total (+ pending charges), from the served text."""
        with self._lock:
            lines = [i for items in self._items.values() for i in items]
            if include_pending:
                lines += self._pending
        return sum((Decimal(str(i["total"])) for i in lines), Decimal(0))

    def line_count(self, include_pending: bool = True) -> int:
        with self._lock:
            n = sum(len(items) for items in self._items.values())
            return n + (len(self._pending) if include_pending else 0)

    def add_invoice(self, items: int = 3) -> str:
        """A new invoice, newer than every other; returns its id."""
        with self._lock:
            return self._new_invoice(items, months_back=0)

    def add_items(self, invoice_id: str, n: int = 1) -> None:
        """Grow an existing invoice (as the latest one may between runs)."""
        with self._lock:
            inv = next(i for i in self._invoices if str(i["id"]) == str(invoice_id))
            start = datetime.fromisoformat(inv["date"]).replace(tzinfo=None)
            lines = self._items[str(invoice_id)]
            lines += [self._item(len(lines) + k, _month_start(start, 1), start) for k in range(n)]
            self._refresh_invoice_amount(str(invoice_id))

    # --- fault injection -------------------------------------------------------------------

    def fail_503(self, times: float = 1, path: str | None = None) -> None:
        """Answer 503 to the next `times` requests (float('inf'): forever), optionally on one path."""
        with self._lock:
            self._fail_left = times
            self._fail_path = self._full(path) if path else None

    def malformed(self, path: str, kind: str = "not_json") -> None:
        """Break every answer on `path`: 'not_json', 'missing_key' (list key dropped) or 'not_object'."""
        assert kind in ("not_json", "missing_key", "not_object")
        with self._lock:
            self._malformed[self._full(path)] = kind

    def repeat_cursor(self, path: str) -> None:
        """From page 2 on, `path` links 'next' back to the cursor of page 2: an endless walk."""
        with self._lock:
            self._repeat.add(self._full(path))

    def clear_faults(self) -> None:
        with self._lock:
            self.rate_limit_every = 0
            self._fail_left = 0
            self._malformed.clear()
            self._repeat.clear()

    # --- what the server saw ---------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """Requests seen on `path` (with or without the /v2 prefix); all requests if None."""
        with self._lock:
            if path is None:
                return len(self.requests)
            full = self._full(path)
            return sum(1 for r in self.requests if r.path == full)

    def counts(self) -> Counter:
        with self._lock:
            return Counter(r.path for r in self.requests)

    def timestamps(self) -> list[float]:
        with self._lock:
            return [r.t for r in self.requests]

    def max_in_window(self, seconds: float = 1.0) -> int:
        """The most requests any window [t, t + seconds) held."""
        ts = sorted(self.timestamps())
        best, lo = 0, 0
        for hi, t in enumerate(ts):
            while t - ts[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def reset_records(self) -> None:
        with self._lock:
            self.requests.clear()
            self._seq = 0

    # --- data generation (called with the lock held, or from __init__) ---------------------

    def _new_invoice(self, n_items: int, months_back: int) -> str:
        invoice_id = 100000 + len(self._invoices) + 1
        period_start = _month_start(self._now, months_back + 1)
        issued = _month_start(self._now, months_back)
        lines = [self._item(i, period_start, issued) for i in range(n_items)]
        self._items[str(invoice_id)] = lines
        invoice = {"id": invoice_id, "date": issued.strftime("%Y-%m-%dT00:00:00+00:00"),
                   "description": f"Invoice #{invoice_id}", "amount": Decimal(0),
                   "balance": Decimal(0)}
        self._invoices.insert(0, invoice)
        self._refresh_invoice_amount(str(invoice_id))
        self._history.insert(0, {"id": 500000 + len(self._history) + 1, "date": invoice["date"],
                                 "type": "invoice", "description": invoice["description"],
                                 "amount": invoice["amount"], "balance": invoice["amount"]})
        return str(invoice_id)

    def _refresh_invoice_amount(self, invoice_id: str) -> None:
        inv = next(i for i in self._invoices if str(i["id"]) == invoice_id)
        inv["amount"] = sum((i["total"] for i in self._items[invoice_id]), Decimal(0))

    def _item(self, index: int, start: datetime, end: datetime) -> dict:
        rng = self._rng
        # Vultr periods run from 20:00 UTC the day before, as in its own examples.
        start, end = start - timedelta(hours=4), end - timedelta(hours=4)
        if index % 3 == 1:
            start += timedelta(days=rng.randint(0, 10), seconds=rng.randint(0, 86399))
        iso = index % 2 == 1
        fmt = "%Y-%m-%dT%H:%M:%S+00:00" if iso else "%Y-%m-%d %H:%M:%S"
        dates = {"start_date": start.strftime(fmt), "end_date": end.strftime(fmt)}
        if index % 7 == 6:
            amount = -_cents(rng.randint(1, 2500))
            return {"description": "Promotional credit", "product": "Discount", **dates,
                    "units": 1, "unit_type": "discount", "unit_price": amount, "total": amount}
        product, unit_type, text = _PRODUCTS[rng.randrange(len(_PRODUCTS))]
        label = f"host-{rng.randint(1, 999):03d}"
        description = text.format(ip=f"192.0.2.{rng.randint(1, 254)}", label=label,
                                  ram=rng.choice([1024, 2048, 8192]), size=rng.choice([10, 40]))
        return {"description": description, "product": product, **dates,
                "units": rng.randint(1, 744), "unit_type": unit_type,
                "unit_price": Decimal(rng.randint(1, 2000)).scaleb(-4),
                "total": _cents(rng.randint(1, 50000))}

    def _instance(self) -> dict:
        rng = self._rng
        vcpus = rng.choice([1, 2, 4])
        return {"id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "os": "Ubuntu 22.04 x64", "ram": 2048 * vcpus, "disk": 25 * vcpus,
                "main_ip": f"192.0.2.{rng.randint(1, 254)}", "vcpu_count": vcpus,
                "region": rng.choice(["ewr", "ams", "sjc"]), "plan": f"vc2-{vcpus}c-{2 * vcpus}gb",
                "date_created": "2023-05-04T10:11:12+00:00", "status": "active",
                "power_status": "running", "server_status": "ok",
                "label": f"web-{rng.randint(1, 99)}", "hostname": "web", "tags": []}

    def _account(self) -> dict:
        pending = sum((i["total"] for i in self._pending), Decimal(0))
        return {"name": "Example Account", "email": "admin@example.com", "acls": ["billing"],
                "balance": Decimal("-100.55"), "pending_charges": pending,
                "last_payment_date": "2020-10-10T01:56:20+00:00",
                "last_payment_amount": Decimal("-1.25")}

    # --- request handling ------------------------------------------------------------------

    @staticmethod
    def _full(path: str) -> str:
        return path if path.startswith("/v2/") or path == "/v2" else "/v2" + path

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        seen = time.monotonic()
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self._seq += 1
            status, body, headers = self._answer(parts.path, query,
                                                 handler.headers.get("Authorization", ""))
            self.requests.append(Request(seen, parts.path, query, status))
        data = body.encode()
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, status: int, message: str, **headers: str) -> tuple[int, str, dict]:
        return status, to_json({"error": message, "status": status}), {
            "Content-Type": "application/json", **headers}

    def _answer(self, path: str, query: dict, auth: str) -> tuple[int, str, dict]:
        slow = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        if self.rate_limit_every and self._seq % self.rate_limit_every == 0:
            return self._error(429, "Rate limit exceeded.", **slow)
        if self._fail_left > 0 and self._fail_path in (None, path):
            self._fail_left -= 1
            return self._error(503, "Service temporarily unavailable.", **slow)
        if auth != f"Bearer {self.token}":
            return self._error(401, "Invalid API token.")
        try:
            body, list_key = self._route(path, query)
        except LookupError as exc:
            return self._error(404, str(exc.args[0]))
        except ValueError as exc:
            return self._error(400, str(exc))
        kind = self._malformed.get(path)
        if kind == "not_json":
            return 200, "<html><body>Bad gateway</body></html>", {"Content-Type": "text/html"}
        if kind == "not_object":
            return 200, "[]", {"Content-Type": "application/json"}
        if kind == "missing_key" and list_key:
            body.pop(list_key, None)
        return 200, to_json(body), {"Content-Type": "application/json"}

    def _route(self, path: str, query: dict) -> tuple[dict, str | None]:
        segments = path.strip("/").split("/")
        if segments[:1] != ["v2"]:
            raise LookupError("Not found.")
        route = segments[1:]
        if route == ["account"]:
            return {"account": self._account()}, None
        if route == ["billing", "history"]:
            return self._page(path, "billing_history", self._history, query), "billing_history"
        if route == ["billing", "invoices"]:
            return self._page(path, "billing_invoices", self._invoices, query), "billing_invoices"
        if route == ["billing", "pending-charges"]:
            return {"pending_charges": self._pending}, "pending_charges"
        if route == ["instances"]:
            return self._page(path, "instances", self._instances, query), "instances"
        if len(route) in (3, 4) and route[:2] == ["billing", "invoices"]:
            if route[2] not in self._items:
                raise LookupError("Invalid invoice ID.")
            if len(route) == 3:
                inv = next(i for i in self._invoices if str(i["id"]) == route[2])
                return {"billing_invoice": inv}, None
            if route[3] == "items":
                return self._page(path, "invoice_items", self._items[route[2]], query), \
                    "invoice_items"
        raise LookupError("Not found.")

    def _page(self, path: str, key: str, items: list, query: dict) -> dict:
        try:
            per_page = int(query.get("per_page", DEFAULT_PER_PAGE))
        except ValueError:
            raise ValueError("Invalid per_page.") from None
        if per_page < 1:
            raise ValueError("Invalid per_page.")
        per_page = min(per_page, MAX_PER_PAGE)
        offset = self._decode_cursor(path, query["cursor"]) if query.get("cursor") else 0
        end = offset + per_page
        nxt = self._cursor(path, end) if end < len(items) else ""
        if path in self._repeat and offset >= per_page and nxt:
            nxt = self._cursor(path, per_page)
        prev = self._cursor(path, max(offset - per_page, 0)) if offset else ""
        return {key: items[offset:end],
                "meta": {"total": len(items), "links": {"next": nxt, "prev": prev}}}

    @staticmethod
    def _cursor(path: str, offset: int) -> str:
        raw = json.dumps({"p": path, "o": offset}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(path: str, cursor: str) -> int:
        try:
            state = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            if state["p"] != path or not isinstance(state["o"], int) or state["o"] < 0:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise ValueError("Invalid cursor.") from None
        return state["o"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    timeout = 10  # idle keep-alive connections don't outlive a test for long
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.fake._handle(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests read `requests`, not stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--invoices", type=int, default=20)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--pending", type=int, default=10)
    parser.add_argument("--instances", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token", default=None)
    args = parser.parse_args()
    fake = FakeVultr(seed=args.seed, invoices=args.invoices, items=args.items,
                     pending=args.pending, instances=args.instances, token=args.token,
                     port=args.port)
    with fake:
        print(f"VULTR_API_URL={fake.url}")
        print(f"VULTR_API_KEY={fake.token}")
        print(f"{fake.line_count()} lines totalling {fake.total_cost()} USD; Ctrl-C stops.",
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
