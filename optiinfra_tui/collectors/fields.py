"""Field parsers every provider shares: exact numbers from JSON text, date-times, text, ids.

Pure functions of one JSON value; anything that doesn't fit raises DataError naming the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from optiinfra_tui.errors import DataError

# What a caller passes for an absent key (`body.get(key, MISSING)`) where absent and null differ.
MISSING: Any = object()
MAX_MAGNITUDE = Decimal(10) ** 12
_MIN_MAGNITUDE = -MAX_MAGNITUDE
_MAX_INT = 10**12
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?$")


def _reject_constant(name: str) -> Any:
    raise DataError(f"the response holds the non-number {name}")


def decode_json(content: bytes) -> Any:
    """JSON with every non-integer number as a Decimal (money never passes through float)."""
    return json.loads(content, parse_float=Decimal, parse_constant=_reject_constant)


def parse_decimal(value: object, field: str, default: Decimal | None = None) -> Decimal:
    """A finite Decimal of sane size from a JSON number or numeric string; None/absent -> default."""
    # The common cases first (a million lines are millions of calls): what decode_json gives.
    kind = type(value)
    if kind is Decimal:
        try:
            if _MIN_MAGNITUDE <= value <= MAX_MAGNITUDE:
                return value
        except InvalidOperation:  # NaN: said below
            pass
    elif kind is int and -_MAX_INT <= value <= _MAX_INT:
        return Decimal(value)
    if value is None or value is MISSING:
        if default is None:
            raise DataError(f"{field} is missing")
        return default
    if isinstance(value, bool):
        raise DataError(f"{field} is a boolean ({value}), expected a number")
    if isinstance(value, float):
        # Never produced by our JSON decoding; a float here means the text was already lost.
        raise DataError(f"{field} arrived as a binary float; expected an exact number")
    if isinstance(value, int):
        number = Decimal(value) if abs(value) <= MAX_MAGNITUDE else None
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise DataError(f"{field} is not a number: {value[:40]!r}") from None
    else:
        shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
        raise DataError(f"{field} is not a number: {shown}")
    if number is None or not number.is_finite() or abs(number) > MAX_MAGNITUDE:
        raise DataError(f"{field} is out of range (non-finite or above 1e12): {str(value)[:40]}")
    return number


def parse_int(value: object, field: str, default: int | None = None) -> int:
    """A whole number (int, integral Decimal or digits) for counts such as vCPUs or MB."""
    number = parse_decimal(value, field, None if default is None else Decimal(default))
    if number != number.to_integral_value():
        raise DataError(f"{field} is not a whole number: {number}")
    return int(number)


def parse_text(value: object, field: str, required: bool = False) -> str:
    """A string; absent or null is '' unless required."""
    if type(value) is str and value.isascii() and (not required or value.strip()):
        return value  # the common case; empty (if required) and non-ASCII take the long way
    if value is None or value is MISSING:
        if required:
            raise DataError(f"{field} is missing")
        return ""
    if not isinstance(value, str):
        raise DataError(f"{field} is a {type(value).__name__}, expected text")
    if required and not value.strip():
        raise DataError(f"{field} is empty")
    if not value.isascii() and not _is_utf8(value):
        raise DataError(f"{field} holds an unpaired surrogate (\\ud800-\\udfff), not text")
    return value


def _is_utf8(text: str) -> bool:
    # JSON's "\ud800" escape decodes to a lone surrogate, which no store can encode.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_id(value: object, field: str) -> str:
    """An identifier given as an integer or a non-empty string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # adjusted() first: int() of 1E+999999999 would build a billion-digit number.
    if (isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 30
            and value == value.to_integral_value()):
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return parse_text(value, field).strip()
    raise DataError(f"{field} is missing or not an id")


def parse_datetime(value: object, field: str) -> datetime:
    """'2021-08-31 20:00:00' (taken as UTC) or ISO 8601 with an offset -> naive UTC datetime."""
    text = parse_text(value, field, required=True).strip()
    try:
        return _datetime_of(text)
    except (ValueError, OverflowError):  # OverflowError: an offset past the calendar's end
        raise DataError(f"{field} is not a date-time: {text[:40]!r}") from None


@lru_cache(maxsize=4096)
def _datetime_of(text: str) -> datetime:
    # Cached: an invoice's lines share a handful of period dates, and a million lines is
    # a million parses otherwise.
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    # What ClickHouse's Date columns hold (billing_period); also keeps date arithmetic
    # on the result away from the calendar's ends.
    if not 1970 <= parsed.year <= 2148:
        raise ValueError("year out of range")
    return parsed


def parse_optional_datetime(value: object, field: str) -> datetime | None:
    """As parse_datetime, but absent, null or '' is None."""
    if type(value) is str and value:
        try:
            return _datetime_of(value)  # the common case, cached on the text as given
        except (ValueError, OverflowError):  # parse_datetime says what is wrong
            pass
    if value is None or value is MISSING or value == "":
        return None
    return parse_datetime(value, field)


@contextmanager
def within(where: str) -> Iterator[None]:
    """A DataError raised inside, its field named bare, says `where` first: a label formatted
    only on failure (a hot parser does the same inline: this costs a microsecond a call)."""
    try:
        yield
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def parse_object(value: object, where: str) -> dict:
    """A JSON object, or DataError saying what `where` was instead."""
    if not isinstance(value, dict):
        raise DataError(f"{where} is a {type(value).__name__}, expected an object")
    return value


def parse_entry(value: object, what: str) -> tuple[str, Callable[..., object]]:
    """A JSON object with an `id`: that id and the object's `get`."""
    item = parse_object(value, what)
    return parse_id(item.get("id"), f"{what}: id"), item.get
