"""The AWS collector: `cost` from Cost Explorer, `export` from a Data Export in S3."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date

from optiinfra_tui.collectors.aws import (
    DATA_TYPES,
    EXPORT_URI_VAR,
    MAX_REQUESTS_VAR,
    PROVIDER,
    AwsAccount,
    cost_explorer,
    default_account,
    exports,
)
from optiinfra_tui.collectors.aws.session import AwsSession, RequestMeter, require_botocore
from optiinfra_tui.collectors.base import (
    CollectContext,
    ProviderCollector,
    default_customer_only,
    utc_today,
)
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.rows import Batch
from optiinfra_tui.settings import Settings


class AwsCollector(ProviderCollector):
    """Collects one customer's AWS costs. `requests` counts the HTTP requests sent."""

    provider = PROVIDER
    data_types = DATA_TYPES
    # Which day it is for the Cost Explorer window (tests bring their own).
    clock: Callable[[], date] = staticmethod(utc_today)

    def __init__(self, settings: Settings, customer_id: str,
                 account: AwsAccount | None = None) -> None:
        require_botocore()
        if account is None:
            default_customer_only(settings, customer_id, PROVIDER, "AWS",
                                  "access_key_id_env and secret_access_key_env")
            account = default_account(settings.env)
        self.customer_id = customer_id
        self.account = account
        # Validated at start (the spec's option); read again for Settings built by hand.
        budget = settings.option(MAX_REQUESTS_VAR)
        self.meter = RequestMeter(budget=int(budget), what="AWS Cost Explorer",
                                  budget_var=MAX_REQUESTS_VAR)
        self._session = AwsSession(settings.env, account, customer_id, self.meter)
        self._clients: dict[str, object] = {}

    @property
    def requests(self) -> int:
        """HTTP requests sent to AWS so far (retries included)."""
        return self.meter.count

    def _batches(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        if data_type == "cost":
            return cost_explorer.collect(self._client("ce"), ctx, self.clock(), self._ce_error)
        if not self.account.export_uri:  # "export"
            raise ConfigError(
                f"Customer {self.customer_id!r} has no AWS Data Export configured: set "
                f"{EXPORT_URI_VAR}=s3://bucket/prefix/export-name (the default customer) "
                f"or export_uri in [customers.{self.customer_id}.aws].")
        return exports.collect(self._client("s3"), ctx, self.account.export_uri,
                               self._session.frozen(), cost_explorer.first_of_month(self.clock()),
                               self._session.translate)

    def _probe(self) -> None:
        """One request that costs nothing: STS GetCallerIdentity."""
        sts = self._client("sts")
        try:
            sts.get_caller_identity()
        except Exception as exc:
            raise self._session.translate(exc, "STS GetCallerIdentity",
                                          "sts:GetCallerIdentity") from None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _client(self, service: str):
        client = self._clients.get(service)
        if client is None:
            client = self._clients[service] = self._session.client(service,
                                                                   billed=service == "ce")
        return client

    def _ce_error(self, exc: BaseException) -> Exception:
        return self._session.translate(exc, "Cost Explorer GetCostAndUsage",
                                       "ce:GetCostAndUsage")
