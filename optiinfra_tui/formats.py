"""Formatting shared by the CLI and the dashboard: money, timestamps, clipped cells, attempts.

Pure functions of their arguments, so every interface shows a figure the same way.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

from optiinfra_tui.rows import CURRENCY_DIGITS
from optiinfra_tui.settings import ordered_types
from optiinfra_tui.storage.history import FINAL_STATUSES

ELLIPSIS = "…"
_SYMBOLS = {"USD": "$"}
_SPACES = re.compile(r"\s+")


def currency_digits(currency: str) -> int:
    """Digits after the point in `currency`'s smallest unit (2 unless ISO 4217 says otherwise)."""
    return CURRENCY_DIGITS.get(currency.upper(), 2)


def normalise(value: Decimal, currency: str = "USD") -> Decimal:
    """`value` at the currency's precision, keeping any further digits it really has.

    68643.900000 -> 68643.90; 5 -> 5.00; 0.0012345 stays 0.0012345.
    """
    places = currency_digits(currency)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int):
        places = max(places, -exponent)
    return value.quantize(Decimal(1).scaleb(-places))


def amount_text(value: Decimal, currency: str = "USD") -> str:
    """A decimal string for JSON: exact, normalised (at least the currency's digits), no
    exponent, no thousands separators."""
    return f"{normalise(value, currency):f}"


def rounded(value: Decimal, currency: str = "USD") -> Decimal:
    """`value` rounded (half up) to the currency's smallest unit: 1234.567891 USD -> 1234.57."""
    return value.quantize(Decimal(1).scaleb(-currency_digits(currency)), ROUND_HALF_UP)


def money(value: Decimal | None, currency: str = "USD", symbol: bool = True) -> str:
    """An amount for people, at the currency's precision: '$1,234.57' (from 1234.567891),
    '-$5.00', '1,234 JPY'; without `symbol` '1,234.57'; '-' for no value. JSON keeps every
    digit (`amount_text`)."""
    if value is None:
        return "-"
    value = rounded(value, currency)
    text = f"{abs(value):,f}"
    sign = "-" if value < 0 else ""
    if not symbol:
        return sign + text
    prefix = _SYMBOLS.get(currency.upper())
    return f"{sign}{prefix}{text}" if prefix else f"{sign}{text} {currency}"


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`; a naive datetime is UTC, as everywhere in this project."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def cell_width(text: str) -> int:
    """Terminal cells `text` takes: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def clip(text: str, width: int, words: bool = False) -> str:
    """`text` in at most `width` cells, ending in `…` where it was cut.

    `words` cuts at a space when one is in the second half, so a message ends on whole words.
    Runs of whitespace (newlines too) become one space.
    """
    text = _SPACES.sub(" ", text).strip()
    if cell_width(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    cut, used = 0, 0
    for ch in text:
        w = cell_width(ch)
        if used + w > width - 1:
            break
        cut, used = cut + 1, used + w
    head = text[:cut]
    if words:
        space = text.rfind(" ", 0, cut + 1)  # a space right at the cut ends a whole word too
        if space > width // 2:
            head = text[:space]
    return head.rstrip(" ,;:-") + ELLIPSIS


def types_label(provider: str, data_types: str | list[str] | tuple[str, ...]) -> str:
    """'cost,account,resource': the types of a run, comma-separated, in canonical order."""
    return ",".join(ordered_types(provider, data_types))


def attempts_label(status: str, attempt: int, max_attempts: int) -> str:
    """'2/4' while more attempts may come; a final run shows the attempts it made ('1/1')."""
    if status in FINAL_STATUSES:
        return f"{attempt}/{attempt}" if attempt else "-"
    return f"{attempt}/{max_attempts}"


def error_text(kind: str | None, message: str | None) -> str:
    """'config: API_KEY is not set…': an error's kind, then its message."""
    if not kind:
        return ""
    message = _SPACES.sub(" ", message or "").strip()
    return f"{kind}: {message}" if message else kind


def json_default(value: object) -> str:
    """JSON for what `json` can't write: money as exact decimal strings, times in RFC 3339."""
    if isinstance(value, Decimal):
        return amount_text(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def duration(ms: int | None) -> str:
    """How long a run took, for people: '850 ms', '12.3 s', '4m05s'."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms // 60_000}m{ms % 60_000 // 1000:02d}s"


def json_text(doc: object) -> str:
    """A document as the CLI's `--json` and the HTTP API write it (indented, exact decimals,
    RFC 3339 times)."""
    return json.dumps(doc, indent=2, default=json_default)


def costs_json(totals: list) -> list[dict]:
    """`costs --json` and GET /api/v1/costs: one object per key and currency (by service, the
    provider too), amounts exact, as decimal strings with at least the currency's digits."""
    return [{"key": t.key, **({"provider": t.provider} if t.provider else {}),
             "currency": t.currency,
             "billed_cost": amount_text(t.billed_cost, t.currency),
             "estimated_cost": amount_text(t.estimated_cost, t.currency),
             "total": amount_text(t.total, t.currency), "rows": t.rows}
            for t in totals]
