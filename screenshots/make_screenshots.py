"""Render every dashboard screen from a seeded data dir to screenshots/*.svg and *.png.

    python screenshots/make_screenshots.py

Seeds a throwaway data dir: a history with successful, failed and retrying runs, another
consumer's heartbeat, and 30 days of cost rows in chDB; then drives the real app with Pilot.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import resvg_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from tui_data import SHOWN_SCHEDULE, FrozenSource, env_for, seed_showcase  # noqa: E402
from tui_pilot import SIZE, loaded, select_run, until  # noqa: E402

from optiinfra_tui.rows import CostRow  # noqa: E402
from optiinfra_tui.runtime import Runtime  # noqa: E402
from optiinfra_tui.settings import load_settings  # noqa: E402
from optiinfra_tui.storage.history import utcnow  # noqa: E402
from optiinfra_tui.tui.app import DashboardApp  # noqa: E402

FONT = "DejaVu Sans Mono"
SERVICES = (("Vultr Cloud Compute", "hours", Decimal("18.40")),
            ("Block Storage", "hours", Decimal("4.10")),
            ("Load Balancer", "hours", Decimal("3.30")))


def seed_costs(store, now: datetime) -> None:
    """45 days of Vultr lines: last month's as invoiced, this month's as the pending estimate."""
    rows = []
    month = now.date().replace(day=1)
    for back in range(45):
        day = now.date() - timedelta(days=back)
        for k, (service, unit, base) in enumerate(SERVICES):
            amount = base + Decimal((back * 7 + k * 3) % 11) / 4
            start = datetime(day.year, day.month, day.day)
            line = hashlib.sha1(f"{day}{service}".encode()).hexdigest()
            rows.append(CostRow(
                line_id=line, customer_id="default_customer", provider_name="vultr",
                billing_account_id="acct-1", invoice_id="" if day >= month else "inv-1001",
                billed_cost=amount, effective_cost=amount, list_cost=amount,
                list_unit_price=Decimal("0.0300"), billing_currency="USD",
                charge_period_start=start, charge_period_end=start + timedelta(days=1),
                billing_period=day.replace(day=1), charge_category="Usage",
                charge_description=f"{service} [web-{k}]", service_name=service,
                resource_id=f"res-{k}", resource_name=f"web-{k}", region_id="ewr",
                pricing_quantity=Decimal(24), pricing_unit=unit, is_estimate=day >= month,
                run_id=1, collected_at=now))
    store.write_cost_lines(rows)


async def shoot(app: DashboardApp, ids: dict[str, int], out: Path) -> list[Path]:
    shots = []

    async def save(name: str) -> None:
        await asyncio.sleep(0.4)  # let the footer and any late repaint land
        shots.append(Path(app.save_screenshot(f"{name}.svg", path=str(out))))

    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await save("main")
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "CollectScreen")
        await save("collect")
        await pilot.press("escape")
        await select_run(pilot, ids["config_failed"])
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "RunDetailScreen"
                    and app.screen.detail is not None)
        await save("run_detail")
        await pilot.press("escape")
        app.main.action_costs()
        await until(pilot, lambda: type(app.screen).__name__ == "CostsScreen")
        await save("costs")
        await pilot.press("escape")
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await save("help")
        await pilot.press("escape")
        await pilot.press("slash")
        await until(pilot, lambda: type(app.screen).__name__ == "FilterScreen")
        await save("filter")
    return shots


def to_png(svg: Path) -> Path:
    png = svg.with_suffix(".png")
    png.write_bytes(bytes(resvg_py.svg_to_bytes(svg_path=str(svg), font_family=FONT,
                                                monospace_family=FONT)))
    return png


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="optiinfra-screens-")) / "home"
    rt = Runtime(load_settings(env_for(home, schedules=SHOWN_SCHEDULE)))
    rt.history()
    now = utcnow().replace(second=0, microsecond=0)
    ids = seed_showcase(now)
    store = rt.metrics()
    seed_costs(store, now)
    app = DashboardApp(rt, source=FrozenSource(rt, metrics=store, now=now), poll=0.2)
    try:
        for svg in asyncio.run(shoot(app, ids, HERE)):
            print(svg.relative_to(HERE.parent), to_png(svg).relative_to(HERE.parent))
    finally:
        rt.close()


if __name__ == "__main__":
    main()
