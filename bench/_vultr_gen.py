"""A fast Vultr-shaped server for bench/ingest.py: invoice pages pre-rendered, nothing stored.

    python bench/_vultr_gen.py --port P --invoices N --items M --token T

tests/fake_vultr.py builds every line in memory and renders JSON per request; this one
renders one page of items per month once, and serves it for every invoice of that month,
so the server costs the collector it serves almost no CPU. The collector's line ids come from
invoice id and position, so repeated page bodies still make distinct rows.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_PER_PAGE = 500
MONTHS = 36  # invoices cycle through three years of months
PRODUCTS = [("Vultr Cloud Compute", "hours", "192.0.2.{n} (2048 MB) [host-{n:03d}]"),
            ("Load Balancer", "hours", "Load Balancer (lb-{n})"),
            ("Block Storage", "hours", "Block Storage 40 GB [vol-{n}]"),
            ("Bandwidth", "overage", "Bandwidth overage")]


def month_start(index: int) -> datetime:
    """The first day of the month `index` months before 2026-01."""
    m = 2026 * 12 - index
    return datetime(m // 12, m % 12 + 1, 1)


class Data:
    def __init__(self, invoices: int, items: int, seed: int = 0) -> None:
        self.invoices, self.items = invoices, items
        rng = random.Random(seed)
        self.pages: dict[tuple[int, int], bytes] = {}  # (month, count) -> items JSON
        self._lines = {m: self._month_lines(rng, m) for m in range(MONTHS)}

    def _month_lines(self, rng: random.Random, month: int) -> list[str]:
        start, end = month_start(month + 1), month_start(month)
        lines = []
        for i in range(MAX_PER_PAGE):
            product, unit, text = PRODUCTS[i % len(PRODUCTS)]
            # Amounts as JSON numbers with at most 2 decimals (repr of cents / 100 is exact text).
            lines.append(json.dumps({
                "description": text.format(n=i % 254 + 1), "product": product,
                "start_date": start.strftime("%Y-%m-%d %H:%M:%S"),
                "end_date": end.strftime("%Y-%m-%d %H:%M:%S"), "units": rng.randint(1, 744),
                "unit_type": unit, "unit_price": 0.0123, "total": rng.randint(1, 50000) / 100,
            }))
        return lines

    def invoice_month(self, invoice_id: int) -> int:
        return (self.invoices - invoice_id) % MONTHS

    def items_page(self, invoice_id: int, offset: int, per_page: int) -> bytes:
        count = max(0, min(per_page, self.items - offset))
        month = self.invoice_month(invoice_id)
        key = (month, count)
        if key not in self.pages:
            self.pages[key] = ",".join(self._lines[month][:count]).encode()
        nxt = f"i{offset + count}" if offset + count < self.items else ""
        return (b'{"invoice_items":[' + self.pages[key] + b'],"meta":{"total":'
                + str(self.items).encode() + b',"links":{"next":"' + nxt.encode()
                + b'","prev":""}}}')

    def invoices_page(self, offset: int, per_page: int) -> bytes:
        ids = range(self.invoices - offset, max(self.invoices - offset - per_page, 0), -1)
        body = [{"id": i, "date": month_start(self.invoice_month(i)).strftime(
            "%Y-%m-%dT00:00:00+00:00"), "description": f"Invoice #{i}", "amount": 1.0,
            "balance": 0} for i in ids]
        end = offset + len(body)
        nxt = f"v{end}" if end < self.invoices else ""
        return json.dumps({"billing_invoices": body, "meta": {
            "total": self.invoices, "links": {"next": nxt, "prev": ""}}}).encode()

    def pending(self) -> bytes:
        now = datetime(2026, 1, 15)
        item = {"description": "Pending compute", "product": "Vultr Cloud Compute",
                "start_date": (now - timedelta(days=14)).strftime("%Y-%m-%d %H:%M:%S"),
                "end_date": now.strftime("%Y-%m-%d %H:%M:%S"), "units": 10,
                "unit_type": "hours", "unit_price": 0.01, "total": 0.1}
        return json.dumps({"pending_charges": [item] * 10}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        data: Data = self.server.data  # type: ignore[attr-defined]
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":  # type: ignore[attr-defined]
            return self._send(401, b'{"error":"Invalid API token.","status":401}')
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        per_page = min(int(query.get("per_page", 100)), MAX_PER_PAGE)
        offset = int(query.get("cursor", "x0")[1:] or 0)
        route = parts.path.strip("/").split("/")[1:]
        if route == ["billing", "invoices"]:
            return self._send(200, data.invoices_page(offset, per_page))
        if len(route) == 4 and route[:2] == ["billing", "invoices"] and route[3] == "items":
            return self._send(200, data.items_page(int(route[2]), offset, per_page))
        if route == ["billing", "pending-charges"]:
            return self._send(200, data.pending())
        if route == ["account"]:
            return self._send(200, b'{"account":{"balance":-1.00,"pending_charges":1.00}}')
        return self._send(404, b'{"error":"Not found.","status":404}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--token", default="bench-token")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.data = Data(args.invoices, args.items)  # type: ignore[attr-defined]
    server.token = args.token  # type: ignore[attr-defined]
    print(f"{args.invoices * args.items} lines", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
