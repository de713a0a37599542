"""Shared fixtures."""

from __future__ import annotations

import pytest

# --- fake Vultr API (tests/fake_vultr.py) -----------------------------------------------------
# `fake_vultr` is a started FakeVultr with default data. For other data, parametrize it
# indirectly: @pytest.mark.parametrize("fake_vultr", [{"invoices": 30}], indirect=True).


@pytest.fixture
def fake_vultr(request):
    from fake_vultr import FakeVultr

    with FakeVultr(**getattr(request, "param", {})) as server:
        yield server


# --- end fake Vultr API -----------------------------------------------------------------------

# --- real services: Redis, PostgreSQL, chDB (tests/services.py) ------------------------------
pytest_plugins = ["services", "aws_fixtures", "bq_fixtures", "azure_fixtures", "four_clouds"]
# --- end real services -------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def history_db(request, tmp_path):
    """The history models on a fresh SQLite file, then on a fresh PostgreSQL database."""
    from optiinfra_tui.storage import history

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/history.db"
    else:
        url = request.getfixturevalue("postgres_url")
    history.connect(url)
    yield url
    history.db.close()
