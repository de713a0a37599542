"""The local Azure for the tests: a certificate the session makes, the HTTPS double of Entra ID,
Cost Management and a storage account (tests/fake_azure.py), and runtimes pointed at it.

`fake_azure` trusts the double's certificate through SSL_CERT_FILE (httpx, and chDB reading an
export's files) and fixes the collector's day to TODAY.
"""

from __future__ import annotations

from datetime import date

import pytest
from fake_azure import FakeAzure, make_certificate

from optiinfra_tui.collectors.azure import AzureCollector
from optiinfra_tui.settings import load_settings
from optiinfra_tui.worker import collection, runs
from optiinfra_tui.worker.runtime import Runtime

TODAY = date(2026, 3, 15)  # the window: 2026-02-01 .. 2026-03-15


@pytest.fixture(scope="session")
def azure_cert(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("azure-tls"))


@pytest.fixture(scope="session")
def untrusted_cert(tmp_path_factory):
    """A second certificate, never in SSL_CERT_FILE."""
    return make_certificate(tmp_path_factory.mktemp("azure-untrusted-tls"))


@pytest.fixture
def fake_azure(azure_cert, monkeypatch, request):
    # TLS trust as httpx (and chDB's url()) read it; the window's "today" is the test's, not
    # the wall clock's.
    monkeypatch.setenv("SSL_CERT_FILE", str(azure_cert[0]))
    monkeypatch.setattr(AzureCollector, "clock", staticmethod(lambda: TODAY))
    with FakeAzure(azure_cert, TODAY, **getattr(request, "param", {})) as fake:
        yield fake


@pytest.fixture
def azure_rt(make_env, fake_azure):
    made: list[Runtime] = []

    def build(**extra: str) -> Runtime:
        rt = Runtime(load_settings(make_env(**{**fake_azure.env(), **extra})))
        rt.history()
        made.append(rt)
        return rt

    yield build
    for rt in made:  # closed, the test process's chDB is free for a CLI test's own process
        rt.close()


def run_once(rt: Runtime, types: tuple[str, ...] = ("cost",),
             customer: str | None = None) -> runs.CollectionRun:
    """One collection through execute_run, its attempts inline as a task would make them."""
    run = runs.create_run(customer or rt.settings.default_customer_id, "azure", types, "cli",
                          rt.settings.max_retries + 1)
    return collection.run_inline(rt, run.id)
