"""Provider collectors: `get_collector` builds the one for a provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from optiinfra_tui.errors import ConfigError

if TYPE_CHECKING:
    from optiinfra_tui.collectors.base import Collector
    from optiinfra_tui.settings import Settings

SUPPORTED = ("vultr", "aws", "gcp", "azure")

# Providers added at run time (benchmarks, plugins): name -> factory(settings, customer_id).
_registered: dict[str, Callable[[Settings, str], Collector]] = {}


def register_provider(name: str, factory: Callable[[Settings, str], Collector],
                      data_types: tuple[str, ...]) -> None:
    """Add a provider in this process: its collector factory and data types (the first is the default)."""
    from optiinfra_tui import settings

    settings.PROVIDERS[name] = tuple(data_types)
    settings.DEFAULT_TYPES[name] = tuple(data_types[:1])
    _registered[name] = factory


def get_collector(provider: str, settings: Settings, customer_id: str) -> Collector:
    """The collector for `provider`, holding `customer_id`'s credential; ConfigError if unknown."""
    if provider == "vultr":
        # Imported here so that importing the package stays cheap (no httpx until needed).
        from optiinfra_tui.collectors.vultr import VultrCollector

        return VultrCollector(settings, customer_id)
    if provider == "aws":
        # botocore is imported only here, when AWS collects (ConfigError if the extra is missing).
        from optiinfra_tui.collectors.aws.collector import AwsCollector

        return AwsCollector(settings, customer_id)
    if provider == "gcp":
        # google-auth is imported only when GCP collects (ConfigError if the extra is missing).
        from optiinfra_tui.collectors.gcp import GcpCollector

        return GcpCollector(settings, customer_id)
    if provider == "azure":
        from optiinfra_tui.collectors.azure import AzureCollector

        return AzureCollector(settings, customer_id)
    if provider in _registered:
        return _registered[provider](settings, customer_id)
    raise ConfigError(
        f"Unknown provider {provider!r}. Supported providers: "
        f"{', '.join(SUPPORTED + tuple(_registered))}."
    )
