"""A Vultr-shaped server for many customers, each with its own key, answering every request
after a delay (real APIs are that far away): bench/scale_customers.py's provider.

    python bench/_vultr_slow.py --port P --customers 10000 [--delay 0.1]

Customer i's key is `key-<i>`; its account holds `invoices(i)` invoices of `items(i)` lines
and `PENDING` pending charges, amounts from `cents(i, invoice, line)`: the bench computes
every customer's exact total with the same functions. asyncio rather than tests/fake_vultr.py
or _vultr_gen.py's thread per connection: hundreds of requests waiting out their delay cost
this process nothing, so the CPU on this 2-core host goes to the consumer being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit

PENDING = 2
INVOICED = ("2025-11-01 00:00:00", "2025-12-01 00:00:00")  # every invoice line's period


def _this_month() -> tuple[str, str]:
    """Pending charges are this month's, not invoiced yet: estimates no invoice retires."""
    now = datetime.now(UTC)
    nxt = (now.year + now.month // 12, now.month % 12 + 1)
    return (f"{now.year}-{now.month:02d}-01 00:00:00", f"{nxt[0]}-{nxt[1]:02d}-01 00:00:00")


PENDING_PERIOD = _this_month()


def invoices(i: int) -> int:
    return 1 + i % 2


def items(i: int) -> int:
    return 2 + i % 3


def cents(i: int, invoice: int, line: int) -> int:
    """Line `line` of invoice `invoice` (-1: the pending charges) of customer i, in cents."""
    return 1 + (i * 7919 + (invoice + 2) * 104729 + line * 31) % 50000


def expected_total(i: int) -> Decimal:
    """Customer i's billed plus estimated charges, to the cent."""
    lines = [cents(i, k, n) for k in range(invoices(i)) for n in range(items(i))]
    lines += [cents(i, -1, n) for n in range(PENDING)]
    return Decimal(sum(lines)).scaleb(-2)


def _line(i: int, invoice: int, line: int, period: tuple[str, str] = INVOICED) -> dict:
    # cents / 100 as a float prints as its two-decimal text: the JSON number Vultr would send.
    amount = cents(i, invoice, line) / 100
    return {"description": f"192.0.2.{line + 1} (2048 MB) [host-{i}-{line}]",
            "product": "Vultr Cloud Compute", "start_date": period[0], "end_date": period[1],
            "units": 720, "unit_type": "hours", "unit_price": 0.01, "total": amount}


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()


def _page(key: str, rows: list) -> bytes:
    return _json({key: rows, "meta": {"total": len(rows), "links": {"next": "", "prev": ""}}})


def answer(path: str, token: str) -> tuple[int, bytes]:
    if not token.startswith("key-") or not token[4:].isdigit():
        return 401, b'{"error":"Invalid API token.","status":401}'
    i = int(token[4:])
    route = urlsplit(path).path.strip("/").split("/")[1:]
    if route == ["billing", "invoices"]:
        return 200, _page("billing_invoices", [
            {"id": i * 10 + k, "date": "2025-12-01T00:00:00+00:00", "description": f"Invoice {k}",
             "amount": 1.0, "balance": 0} for k in range(invoices(i))])
    if len(route) == 4 and route[:2] == ["billing", "invoices"] and route[3] == "items":
        k = int(route[2]) - i * 10
        if not 0 <= k < invoices(i):
            return 404, b'{"error":"Not found.","status":404}'
        return 200, _page("invoice_items", [_line(i, k, n) for n in range(items(i))])
    if route == ["billing", "pending-charges"]:
        return 200, _json({"pending_charges": [_line(i, -1, n, PENDING_PERIOD)
                                               for n in range(PENDING)]})
    if route == ["account"]:
        return 200, b'{"account":{"balance":-1.00,"pending_charges":1.00}}'
    return 404, b'{"error":"Not found.","status":404}'


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            token = headers.get("authorization", "").removeprefix("Bearer ")
            await asyncio.sleep(delay)
            status, body = answer(path, token)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main_async(port: int, delay: float) -> None:
    server = await asyncio.start_server(lambda r, w: serve(r, w, delay), "127.0.0.1", port,
                                        backlog=1024)
    print("serving", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.1)
    args = parser.parse_args()
    try:
        asyncio.run(main_async(args.port, args.delay))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
