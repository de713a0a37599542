"""Vultr, AWS, Azure and GCP side by side: each provider's local double seeded around one day,
and the variables that point one customer's collections at all four, for the tests of what
the dashboard and the CLI show.

Azure bills in EUR here (one of its services, and some AWS and GCP lines, in EUR too): a
customer whose currencies must never be added together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from aws_truth import Truth, ce_pages, seeded_truth
from bq_fixtures import BillingExport, seeded_rows
from fake_azure import FakeAzure
from fake_vultr import FakeVultr

PROVIDERS = ("aws", "azure", "gcp", "vultr")


@dataclass
class FourClouds:
    """The four doubles, seeded so that each has spent this month up to `today`."""

    today: date
    vultr: FakeVultr
    aws_env: dict[str, str]
    aws_truth: Truth
    azure: FakeAzure
    gcp: BillingExport
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The default customer's variables for all four providers."""
        return {"VULTR_API_KEY": self.vultr.token, "VULTR_API_URL": self.vultr.url,
                **self.aws_env, **self.azure.env(),
                "GCP_BILLING_TABLE": self.gcp.billing_table,
                "BIGQUERY_API_URL": self.gcp.emulator.url, **self.extra}

    def totals(self) -> dict[tuple[str, str], Decimal]:
        """(provider, currency) -> every charge each double holds (billed: invoices and
        estimates; Cost Explorer's unblended, Cost Management's actual cost, GCP's cost with
        its credits)."""
        out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        out[("vultr", "USD")] = self.vultr.total_cost()
        for (_day, _service, _kind, currency), (billed, _) in self.aws_truth.items():
            out[("aws", currency)] += billed
        for (_day, _service, _kind, currency), (billed, _) in self.azure.groups().items():
            out[("azure", currency)] += billed
        for currency, amount in self.gcp.total().items():
            out[("gcp", currency)] += amount
        return dict(out)


@pytest.fixture
def four_clouds(aws, billing_export, azure_cert, monkeypatch):
    """A factory: the four doubles seeded around `today` (started; stopped after the test)."""
    started: list = []

    def make(today: date) -> FourClouds:
        monkeypatch.setenv("SSL_CERT_FILE", str(azure_cert[0]))  # the Azure double's TLS
        now = datetime(today.year, today.month, today.day, 12)
        vultr = FakeVultr(now=now, invoices=3).__enter__()
        started.append(vultr)
        azure = FakeAzure(azure_cert, today, currency="EUR",
                          purchase=Decimal("8765.432109")).__enter__()
        started.append(azure)
        first = today.replace(day=1)
        truth = seeded_truth(first, today.day)  # the open month: estimates
        aws.inject_ce(ce_pages(truth, estimated={first + timedelta(days=n)
                                                 for n in range(today.day)}))
        days = [first + timedelta(days=n) for n in range(today.day)]
        billing_export.insert(seeded_rows(days, datetime(today.year, today.month, today.day, 6,
                                                         tzinfo=UTC), per_day=6))
        return FourClouds(today, vultr, dict(aws.env), truth, azure, billing_export,
                          {"SSL_CERT_FILE": str(azure_cert[0])})

    yield make
    for server in started:
        server.stop()
