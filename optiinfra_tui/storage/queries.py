"""Cost queries: billed and estimated totals by provider, service, day or customer; rows back.

Every read uses FINAL (the latest version of each row), and counts an estimate only for a month
that has no invoice lines yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from optiinfra_tui.rows import COST_LINES, PENDING_CHARGES
from optiinfra_tui.storage.clickhouse import ClickHouse
from optiinfra_tui.storage.metrics_schema import TABLES

_KEYS = {
    "provider": "provider_name",
    "service": "service_name",
    "customer": "customer_id",
    "day": "toString(toDate(charge_period_start))",
}


@dataclass(frozen=True)
class CostTotal:
    key: str
    billed_cost: Decimal  # from invoice lines
    estimated_cost: Decimal  # from the pending estimate
    rows: int

    @property
    def total(self) -> Decimal:
        return self.billed_cost + self.estimated_cost


def _dec(value) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _utc_today() -> date:
    return datetime.now(UTC).date()


class Queries(ClickHouse):
    """The read side of the metrics store."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        db = self.database
        # Estimates count only for months without invoice lines, even if a race left some.
        self._counted = (f"(NOT is_estimate OR (customer_id, provider_name, billing_period) NOT IN "
                         f"(SELECT customer_id, provider_name, billing_period FROM {db}.{COST_LINES} "
                         f"WHERE NOT is_estimate))")

    # --- reads --------------------------------------------------------------------------------

    def costs(self, by: str, since: date | None = None,
              customer_id: str | None = None) -> list[CostTotal]:
        """Billed and estimated totals grouped by provider, service, day or customer."""
        key = _KEYS.get(by)
        if key is None:
            raise ValueError(f"costs by {by!r}: choose one of {', '.join(_KEYS)}")
        where, params = self._filters(since, customer_id)
        order = "key" if by == "day" else "billed + estimated DESC, key"
        rows = self._rows(
            f"SELECT {key} AS key, sumIf(billed_cost, NOT is_estimate) AS billed, "
            f"sumIf(billed_cost, is_estimate) AS estimated, count() AS n "
            f"FROM {self._t(COST_LINES)} FINAL WHERE {where} GROUP BY key ORDER BY {order}",
            params)
        return [CostTotal(str(k), _dec(b), _dec(e), int(n)) for k, b, e, n in rows]

    def total(self, customer_id: str | None = None) -> CostTotal:
        where, params = self._filters(None, customer_id)
        ((billed, estimated, n),) = self._rows(
            f"SELECT sumIf(billed_cost, NOT is_estimate), sumIf(billed_cost, is_estimate), "
            f"count() FROM {self._t(COST_LINES)} FINAL WHERE {where}", params)
        return CostTotal(customer_id or "total", _dec(billed), _dec(estimated), int(n))

    def spend_by_day_and_provider(self, days: int = 30, customer_id: str | None = None,
                                  ) -> list[tuple[date, str, Decimal]]:
        """Billed plus estimated spend per day and provider over the last `days` days (UTC)."""
        where, params = self._filters(_utc_today() - timedelta(days=days - 1), customer_id)
        rows = self._rows(
            f"SELECT toDate(charge_period_start) AS day, provider_name, sum(billed_cost) "
            f"FROM {self._t(COST_LINES)} FINAL WHERE {where} "
            f"GROUP BY day, provider_name ORDER BY day, provider_name", params)
        return [(d, p, _dec(v)) for d, p, v in rows]

    def month_to_date(self, today: date | None = None, customer_id: str | None = None) -> Decimal:
        """Invoice lines plus the estimate for the month holding `today` (UTC)."""
        where, params = self._filters(None, customer_id)
        params["m"] = (today or _utc_today()).replace(day=1).isoformat()
        ((value,),) = self._rows(f"SELECT sum(billed_cost) FROM {self._t(COST_LINES)} FINAL "
                                 f"WHERE {where} AND billing_period = {{m:Date}}", params)
        return _dec(value)

    def pending_estimate(self, customer_id: str | None = None) -> Decimal:
        """The counted part of the current pending charges."""
        where, params = self._filters(None, customer_id)
        ((value,),) = self._rows(f"SELECT sum(billed_cost) FROM {self._t(COST_LINES)} FINAL "
                                 f"WHERE is_estimate AND {where}", params)
        return _dec(value)

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

    def _filters(self, since: date | None, customer_id: str | None) -> tuple[str, dict]:
        where, params = [self._counted], {}
        if since is not None:
            where.append("toDate(charge_period_start) >= {since:Date}")
            params["since"] = since.isoformat()
        if customer_id is not None:
            where.append("customer_id = {c:String}")
            params["c"] = customer_id
        return " AND ".join(where), params
