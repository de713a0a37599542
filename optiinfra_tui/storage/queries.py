"""Cost queries: billed and estimated totals per currency by provider, service, day or customer
(charges spread over the days of their periods); rows read back.

Every read uses FINAL (the latest version of each row), and counts an estimate only for a month
that has no invoice lines yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from optiinfra_tui.rows import (
    COST_LINES,
    CURRENCY_DIGITS,
    INVOICE,
    PENDING,
    PENDING_CHARGES,
    SUPERSEDES,
)
from optiinfra_tui.storage.clickhouse import ClickHouse
from optiinfra_tui.storage.metrics_schema import TABLES

_KEYS = {  # `costs(by=...)`: the column each groups by; days come from spreading charges
    "provider": "provider_name",
    # Providers name their services alike (Bandwidth, Storage): each provider's apart.
    "service": "(provider_name, service_name)",
    "day": "",
    "customer": "customer_id",
}


@dataclass(frozen=True)
class CostTotal:
    key: str
    currency: str  # amounts of different currencies are never added
    billed_cost: Decimal  # from invoice lines
    estimated_cost: Decimal  # from the pending estimate
    rows: int
    provider: str = ""  # by service: whose service it is

    @property
    def total(self) -> Decimal:
        return self.billed_cost + self.estimated_cost


def _total(key, currency: str, billed, estimated, rows: int) -> CostTotal:
    """A CostTotal of a group's key: a (provider, service) pair by service."""
    provider, key = key if isinstance(key, tuple) else ("", key)
    return CostTotal(str(key), currency, _dec(billed), _dec(estimated), int(rows), str(provider))


@dataclass(frozen=True)
class CostSummary:
    """One currency's figures over everything collected, and its month to date."""

    currency: str
    billed_cost: Decimal  # invoice lines
    estimated_cost: Decimal  # pending charges of months not invoiced yet
    month_to_date: Decimal  # charges spread per day, on month_start..today
    month_start: date
    today: date
    rows: int

    @property
    def total(self) -> Decimal:
        return self.billed_cost + self.estimated_cost


def _dec(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _micro(value: int) -> Decimal:
    return Decimal(int(value)).scaleb(-6)


def _one_currency(rows: list[tuple], empty: tuple) -> tuple:
    """The one row of a per-currency aggregate: adding currencies would make a wrong figure."""
    if len(rows) > 1:
        raise ValueError(f"charges in several currencies ({', '.join(r[0] for r in rows)}): "
                         "read them per currency (costs(by=...) or summary())")
    return rows[0] if rows else empty


def _utc_today() -> date:
    return datetime.now(UTC).date()


class Queries(ClickHouse):
    """The read side of the metrics store."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        db = self.database
        month = "(customer_id, provider_name, billing_period)"
        # Pending estimates count only for months without invoice lines, even if a race left
        # some ('': rows stored before sources were recorded).
        counted = [f"(NOT is_estimate OR source NOT IN ('{PENDING}', '') OR {month} NOT IN "
                   f"(SELECT {month} FROM {db}.{COST_LINES} "
                   f"WHERE NOT is_estimate AND source IN ('{INVOICE}', '')))"]
        # A month one source describes in more detail counts none of a coarser source's rows.
        for better, coarser in SUPERSEDES.items():
            names = ", ".join(f"'{c}'" for c in coarser)
            counted.append(f"(source NOT IN ({names}) OR {month} NOT IN (SELECT {month} FROM "
                           f"{db}.{COST_LINES} WHERE source = '{better}' AND is_deleted = 0))")
        self._counted = " AND ".join(counted)

    # --- reads --------------------------------------------------------------------------------

    def costs(self, by: str, since: date | None = None,
              customer_id: str | None = None) -> list[CostTotal]:
        """Billed and estimated totals per currency, grouped by provider, service (each
        provider's apart: `provider` says whose), day or customer.

        By day, and from `since` on, each charge counts pro rata over the days of its charge
        period (see `_spread`); a day's `rows` are the lines charged on it.
        """
        if by not in _KEYS:
            raise ValueError(f"costs by {by!r}: choose one of {', '.join(_KEYS)}")
        where, params = self._filters(customer_id)
        if by == "day":
            rows = self._spread_rows("''", "day", where, params, since, None)
            return [CostTotal(d.isoformat(), c, b, e, n) for _, d, c, b, e, n, _ in rows]
        key = _KEYS[by]
        if since is not None:
            rows = self._spread_rows(key, "key", where, params, since, None)
            totals = [_total(k, c, b, e, first) for k, _, c, b, e, _, first in rows]
        else:
            totals = [_total(k, c, b, e, n) for k, c, b, e, n in self._rows(
                f"SELECT {key} AS key, billing_currency, sumIf(billed_cost, NOT is_estimate), "
                f"sumIf(billed_cost, is_estimate), count() FROM {self._t(COST_LINES)} FINAL "
                f"WHERE {where} GROUP BY key, billing_currency", params)]
        return sorted(totals, key=lambda t: (t.currency, -t.total, t.key, t.provider))

    def total(self, customer_id: str | None = None) -> CostTotal:
        """Every counted charge of one currency; ValueError if they are in several."""
        where, params = self._filters(customer_id)
        rows = self._rows(
            f"SELECT billing_currency, sumIf(billed_cost, NOT is_estimate), "
            f"sumIf(billed_cost, is_estimate), count() FROM {self._t(COST_LINES)} FINAL "
            f"WHERE {where} GROUP BY billing_currency", params)
        currency, billed, estimated, n = _one_currency(rows, ("USD", 0, 0, 0))
        return CostTotal(customer_id or "total", currency, _dec(billed), _dec(estimated), int(n))

    def summary(self, today: date | None = None,
                customer_id: str | None = None) -> list[CostSummary]:
        """Per currency: billed, estimated, and the month to date (`today`'s month, UTC).

        The month to date is what the charges spread over their periods put on the days of
        this month up to and including `today`: not the estimate, nor a whole month's invoice.
        """
        today = today or _utc_today()
        month = today.replace(day=1)
        where, params = self._filters(customer_id)
        to_date = {c: b + e for _, _, c, b, e, _, _ in
                   self._spread_rows("''", "key", where, params, month, today)}
        return sorted((CostSummary(c, _dec(b), _dec(e), to_date.get(c, Decimal(0)), month, today,
                                   int(n)) for c, b, e, n in self._rows(
            f"SELECT billing_currency, sumIf(billed_cost, NOT is_estimate), "
            f"sumIf(billed_cost, is_estimate), count() FROM {self._t(COST_LINES)} FINAL "
            f"WHERE {where} GROUP BY billing_currency", params)),
            key=lambda s: (-s.total, s.currency))

    def spend_by_day_and_provider(self, days: int = 30, customer_id: str | None = None,
                                  today: date | None = None,
                                  ) -> list[tuple[date, str, str, Decimal]]:
        """(day, provider, currency, amount): billed plus estimated spend over the last `days`
        days up to `today` (UTC), each charge spread over the days of its period."""
        today = today or _utc_today()
        where, params = self._filters(customer_id)
        rows = self._spread_rows("provider_name", "day, key", where, params,
                                 today - timedelta(days=days - 1), today)
        return [(d, p, c, b + e) for p, d, c, b, e, _, _ in rows]

    def pending_estimate(self, customer_id: str | None = None) -> Decimal:
        """The counted part of the current pending charges (of one currency)."""
        where, params = self._filters(customer_id)
        rows = self._rows(f"SELECT billing_currency, sum(billed_cost) FROM {self._t(COST_LINES)} "
                          f"FINAL WHERE is_estimate AND {where} GROUP BY billing_currency", params)
        return _dec(_one_currency(rows, ("USD", 0))[1])

    def _spread_rows(self, key: str, group: str, where: str, params: dict, first: date | None,
                     last: date | None) -> list[tuple[str, date, str, Decimal, Decimal, int, int]]:
        """Charges spread over their days, in `first`..`last`, summed per `group` (of "key"
        and "day") and currency: (key, day, currency, billed, estimated, line-days, lines).

        Lines sharing a charge period are summed first; each sum is shared out in whole minor
        units of its currency (millionths where it has finer digits) in proportion to the time
        the period covers on each UTC day. Shares are differences of the rounded running
        totals, so the days of a charge add up to it exactly, and so does every run of its
        first days to within half a unit (a month to date is as near as it can be).
        """
        window, params = [where], dict(params, lo=(first or date(1970, 1, 1)).isoformat(),
                                       cur=list(CURRENCY_DIGITS),
                                       dig=list(CURRENCY_DIGITS.values()))
        if first is not None:
            window.append("toDate(charge_period_end) >= {lo:Date}")
        days = ["day >= {lo:Date}"]
        if last is not None:
            window.append("toDate(charge_period_start) <= {hi:Date}")
            days.append("day <= {hi:Date}")
            params["hi"] = last.isoformat()
        day_us = 86_400_000_000
        sql = f"""
SELECT {"key" if "key" in group else "''"}, {"day" if "day" in group else "toDate(0)"},
       currency, sumIf(m, NOT est), sumIf(m, est), sum(lines), sum(firsts)
FROM (
    SELECT key, currency, est, lines, toDate(fromUnixTimestamp64Micro(d0, 'UTC')) AS d,
           d + i AS day, sgn * share * step AS m,
           if(day = greatest(d, {{lo:Date}}), lines, 0) AS firsts
    FROM (
        SELECT {key} AS key, billing_currency AS currency, is_estimate AS est,
               count() AS lines, toInt128(sum(billed_cost) * 1000000) AS micro,
               toUnixTimestamp64Micro(charge_period_start) AS s,
               toUnixTimestamp64Micro(charge_period_end) AS e,
               toInt128(intExp10(6 - transform(currency, {{cur:Array(String)}},
                                                {{dig:Array(UInt8)}}, 2))) AS minor,
               if(micro % minor = 0, minor, toInt128(1)) AS step,
               intDiv(abs(micro), step) AS units,
               if(micro < 0, -1, 1) AS sgn,
               s - s % {day_us} AS d0,
               if(e > s, e - s, 1) AS span,
               if(e > s, intDiv(e - 1 - d0, {day_us}) + 1, 1) AS n,
               arrayMap(i -> if(e > s, least(e, d0 + (i + 1) * {day_us})
                                       - greatest(s, d0 + i * {day_us}), 1), range(n)) AS weight,
               arrayMap(c -> intDiv(2 * units * c + span, 2 * span), arrayCumSum(weight)) AS upto,
               arrayPopFront(arrayDifference(arrayPushFront(upto, toInt128(0)))) AS shares
        FROM {self._t(COST_LINES)} FINAL WHERE {" AND ".join(window)}
        GROUP BY key, currency, est, s, e
    ) ARRAY JOIN shares AS share, range(n) AS i
)
WHERE {" AND ".join(days)}
GROUP BY {group}, currency ORDER BY {group}, currency"""
        return [(k, d, c, _micro(b), _micro(e), int(ld), int(n))
                for k, d, c, b, e, ld, n in self._rows(sql, params)]

    def count_rows(self, table: str, customer_id: str | None = None) -> int:
        """Live rows in a table (after dedup); cost_lines and pending_charges split one table."""
        name, where, params = self._select(table, customer_id, None)
        return int(self._rows(f"SELECT count() FROM {self._t(name)} FINAL WHERE {where}",
                              params)[0][0])

    def read_rows(self, table: str, customer_id: str | None = None,
                  provider: str | None = None, limit: int | None = None) -> list:
        """Live rows of a table as their dataclasses, in key order."""
        name, where, params = self._select(table, customer_id, provider)
        spec = TABLES[name]
        order = spec.engine.split("ORDER BY", 1)[1].strip()
        sql = (f"SELECT {', '.join(spec.columns)} FROM {self._t(name)} FINAL "
               f"WHERE {where} ORDER BY {order}")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [spec.row_type(*row) for row in self._rows(sql, params)]

    def _select(self, table: str, customer_id: str | None,
                provider: str | None) -> tuple[str, str, dict]:
        name = COST_LINES if table == PENDING_CHARGES else table
        if name not in TABLES:
            raise ValueError(f"unknown metrics table {table!r}")
        where, params = ["1"], {}
        if table in (COST_LINES, PENDING_CHARGES):
            where.append("is_estimate" if table == PENDING_CHARGES else "NOT is_estimate")
        if customer_id is not None:
            where.append("customer_id = {c:String}")
            params["c"] = customer_id
        if provider is not None:
            where.append("provider_name = {p:String}")
            params["p"] = provider
        return name, " AND ".join(where), params

    def _filters(self, customer_id: str | None) -> tuple[str, dict]:
        where, params = [self._counted], {}
        if customer_id is not None:
            where.append("customer_id = {c:String}")
            params["c"] = customer_id
        return " AND ".join(where), params
