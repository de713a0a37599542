"""Provider collectors: `get_collector` builds the one for a provider, from its spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optiinfra_tui import providers

if TYPE_CHECKING:
    from optiinfra_tui.collectors.base import Collector
    from optiinfra_tui.settings import Settings


def get_collector(provider: str, settings: Settings, customer_id: str) -> Collector:
    """The collector for `provider`, holding `customer_id`'s access; ConfigError if the provider
    is unknown, its SDK (extra) is missing, or the customer has no access to it.

    The provider's SDK is imported here, the first time it collects.
    """
    spec = providers.spec(provider)
    cls = spec.load_collector()
    account = settings.account(customer_id, provider)
    return cls(settings, customer_id, account=spec.typed_account(account, settings.env))
