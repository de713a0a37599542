"""Vultr, AWS, Azure and GCP side by side in one store (each collected from its local double):
what the CLI shows, per currency, never adding currencies; the dashboard's pictures are in
test_tui_snapshots.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from four_clouds import PROVIDERS

from optiinfra_tui.formats import money
from optiinfra_tui.storage.queries import CostSummary
from optiinfra_tui.tui.source import CostsData
from optiinfra_tui.tui.widgets.costs import render_costs, short_amount

CLI = [sys.executable, "-m", "optiinfra_tui.cli"]
CENT = Decimal("0.01")
AMOUNT = re.compile(r"-?\d{1,3}(,\d{3})*\.\d\d")  # a figure at a two-digit currency's precision


def cli(args: list[str], env: dict[str, str]) -> str:
    r = subprocess.run(CLI + args, env=env, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def table(text: str, names: int) -> list[list[str]]:
    """The lines of a `costs` table, as cells (`names` name columns before CUR)."""
    out = []
    for line in text.splitlines()[1:]:
        if not line.strip():
            break
        cells = re.split(r" {2,}", line.strip())
        assert len(cells) == names + 5, line
        out.append(cells)
    return out


def test_costs_cli_shows_all_four_providers_each_currency_apart(four_clouds, tmp_path):
    clouds = four_clouds(datetime.now(UTC).date())  # the CLI's collectors use the real day
    (tmp_path / "none.toml").write_text("schedules = []\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith((
        "VULTR_", "AWS_", "AZURE_", "GCP_", "GOOGLE_", "BIGQUERY_", "REDIS_", "DATABASE_URL",
        "CLICKHOUSE_URL", "OPTIINFRA_"))}
    env = dict(base, **clouds.env, OPTIINFRA_HOME=str(tmp_path / "home"),
               OPTIINFRA_CONFIG=str(tmp_path / "none.toml"), PROVIDER_CHECK_INTERVAL="0",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    for provider in PROVIDERS:
        done = json.loads(cli(["collect", provider, "--inline", "--json"], env))
        assert done["status"] == "success", done
    truth = clouds.totals()
    assert {c for _, c in truth} == {"USD", "EUR"} and {p for p, _ in truth} == set(PROVIDERS)
    per_currency: dict[str, Decimal] = defaultdict(Decimal)
    for (_, currency), amount in truth.items():
        per_currency[currency] += amount

    # --json: exact, one object per provider and currency.
    doc = json.loads(cli(["costs", "--by", "provider", "--json"], env))
    assert {(d["key"], d["currency"]): Decimal(d["total"]) for d in doc} == truth
    assert all(Decimal(d["billed_cost"]) + Decimal(d["estimated_cost"]) == Decimal(d["total"])
               for d in doc)

    # The table: every figure at the currency's precision, rounded from the exact one.
    text = cli(["costs", "--by", "provider"], env)
    assert text.splitlines()[0].split() == ["PROVIDER", "CUR", "BILLED", "ESTIMATED", "TOTAL",
                                            "ROWS"]
    lines = table(text, 1)
    assert {(p, c): Decimal(t.replace(",", "")) for p, c, _, _, t, _ in lines} == {
        k: cents(v) for k, v in truth.items()}
    assert all(AMOUNT.fullmatch(cell) for line in lines for cell in line[2:5])
    # One total per currency, never one of both.
    totals = {c: Decimal(t.replace(",", "")) for c, t in re.findall(
        r"^TOTAL +(\w{3}) +\S+ +\S+ +(\S+)", text, re.M)}
    assert totals == {c: cents(v) for c, v in per_currency.items()}
    assert len(re.findall(r"^Month to date .*: (\$[\d,.]+|[\d,.]+ EUR)$", text, re.M)) == 2
    assert "--json gives them exactly" in text

    # By service: each provider's services apart, even where two name one alike.
    services = json.loads(cli(["costs", "--by", "service", "--json"], env))
    by_owner: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for d in services:
        by_owner[(d["provider"], d["currency"])] += Decimal(d["total"])
    assert dict(by_owner) == truth
    keys = {(d["key"], d["provider"], d["currency"]) for d in services}
    assert {("Bandwidth", "azure", "EUR"), ("Bandwidth", "vultr", "USD"),
            ("AWS Lambda", "aws", "USD"), ("Compute Engine", "gcp", "USD"),
            ("Virtual Machines", "azure", "EUR")} <= keys
    text = cli(["costs", "--by", "service"], env)
    lines = table(text, 2)
    assert {(s, p, c) for s, p, c, *_ in lines} == {
        (k if len(k) <= 32 else k[:31].rstrip(" ,;:-") + "…", p, c) for k, p, c in keys}
    assert all(AMOUNT.fullmatch(cell) for line in lines for cell in line[3:6])

    # By day: each day per currency; the days add up to every charge, exactly.
    days = json.loads(cli(["costs", "--by", "day", "--json"], env))
    summed: dict[str, Decimal] = defaultdict(Decimal)
    for d in days:
        summed[d["currency"]] += Decimal(d["total"])
    assert dict(summed) == dict(per_currency)
    assert len({(d["key"], d["currency"]) for d in days}) == len(days)
    lines = table(cli(["costs", "--by", "day"], env), 1)
    assert all(AMOUNT.fullmatch(cell) for line in lines for cell in line[2:5])


# --- the costs panel fits its 36 cells, whatever the figures -------------------------------


def test_the_costs_panel_fits_its_width_with_four_providers_and_large_figures():
    today = date(2026, 11, 20)
    by_day = [(today - timedelta(days=n), p, "USD", Decimal("123456.789012") * (n % 5 + 1))
              for n in range(30) for p in PROVIDERS]
    summary = [CostSummary("USD", Decimal("9876543.210987"), Decimal("1234567.891234"),
                           Decimal("7654321.987654"), today.replace(day=1), today, 999),
               CostSummary("EUR", Decimal("1"), Decimal("0"), Decimal("1"), today, today, 1)]
    text = render_costs(CostsData(by_day=by_day, summary=summary, today=today), 30, 4, 36)
    lines = text.plain.splitlines()
    assert max(len(line) for line in lines) <= 36 and len(lines) == 8
    # The estimate's symbol goes before the line would wrap, then the estimate.
    assert lines[0] == "MTD $7,654,321.99  est. 1,234,567.89"
    assert lines[1].startswith("2.5M│")  # the tallest day (four providers), shortened
    assert lines[-1] == "■ aws ■ azure ■ gcp ■ vultr USD/day"
    summary[0] = CostSummary("USD", Decimal(0), Decimal("1234567.891234"),
                             Decimal("76543219.987654"), today.replace(day=1), today, 999)
    data = CostsData(by_day=by_day, summary=summary, today=today)
    assert render_costs(data, 30, 4, 36).plain.splitlines()[0] == "MTD $76,543,219.99"
    assert render_costs(data, 30, 4, None).plain.splitlines()[0] == (
        "MTD $76,543,219.99  est. $1,234,567.89")


def test_money_is_shown_at_each_currencys_precision():
    assert money(Decimal("589021.716313"), "USD") == "$589,021.72"
    assert money(Decimal("0.005"), "USD") == "$0.01"  # half up, as invoices round
    assert money(Decimal("-0.004"), "USD") == "$0.00"  # no '-$0.00'
    assert money(Decimal("28476.39995"), "EUR") == "28,476.40 EUR"
    assert money(Decimal("1234.5"), "JPY") == "1,235 JPY"
    assert money(Decimal("12.3456"), "KWD", symbol=False) == "12.346"
    assert [short_amount(Decimal(v)) for v in ("9016", "36973", "617283.9", "3700000",
                                               "98765432109")] == [
        "9,016", "37k", "617k", "3.7M", "99G"]
