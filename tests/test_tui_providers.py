"""The dashboard's providers come from the specs: the collect modal offers every installed
provider with its own data types and customers."""

from __future__ import annotations

import pytest
from textual.widgets import Select, SelectionList
from tui_pilot import SIZE, loaded, make_app, make_runtime, screen_text, until

from optiinfra_tui import providers
from optiinfra_tui.storage.history import CollectionRun
from optiinfra_tui.tui.screens.collect import CollectScreen

pytestmark = pytest.mark.anyio

ACME_AWS = ('schedules = []\n[customers.acme.aws]\naccess_key_id_env = "ACME_KEY"\n'
            'secret_access_key_env = "ACME_SECRET"\n')


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def open_modal(pilot) -> CollectScreen:
    app = pilot.app
    await loaded(pilot)
    await pilot.press("c")
    return await until(pilot, lambda: isinstance(app.screen, CollectScreen) and app.screen)


async def test_the_collect_modal_offers_every_provider_with_its_types_and_customers(tmp_path):
    rt = make_runtime(tmp_path / "home", schedules=ACME_AWS)
    app = make_app(rt)
    try:
        async with app.run_test(size=SIZE) as pilot:
            modal = await open_modal(pilot)
            provider = modal.query_one("#provider", Select)
            assert [v for _, v in provider._options if v != Select.NULL] == list(
                providers.names())
            assert provider.value == "vultr"  # the default customer has only Vultr here
            provider.value = "aws"
            types = modal.query_one("#types", SelectionList)
            await until(pilot, lambda: [types.get_option_at_index(i).value
                                        for i in range(types.option_count)] == ["cost", "export"])
            assert types.selected == ["cost"]
            customer = modal.query_one("#customer", Select)
            await until(pilot, lambda: customer.value == "acme")
            assert "AWS (aws)" in screen_text(app)
            await pilot.press("enter")
            run = await until(pilot, lambda: CollectionRun.select().first())
            assert (run.provider, run.customer_id, run.data_types, run.trigger) == (
                "aws", "acme", "cost", "manual")
    finally:
        rt.close()


async def test_the_modal_starts_with_the_provider_the_default_customer_can_collect(tmp_path):
    rt = make_runtime(tmp_path / "home", AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
                      AWS_SECRET_ACCESS_KEY="secret")
    app = make_app(rt)
    try:
        async with app.run_test(size=SIZE) as pilot:
            modal = await open_modal(pilot)
            assert modal.query_one("#provider", Select).value == "aws"
            assert modal.query_one("#customer", Select).value == "default_customer"
    finally:
        rt.close()
