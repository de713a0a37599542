"""Provider collectors: `get_collector` builds the one for a provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optiinfra_tui.errors import ConfigError

if TYPE_CHECKING:
    from optiinfra_tui.collectors.base import Collector
    from optiinfra_tui.settings import Settings

SUPPORTED = ("vultr",)


def get_collector(provider: str, settings: Settings, customer_id: str) -> Collector:
    """The collector for `provider`, holding `customer_id`'s credential; ConfigError if unknown."""
    if provider == "vultr":
        # Imported here so that importing the package stays cheap (no httpx until needed).
        from optiinfra_tui.collectors.vultr import VultrCollector

        return VultrCollector(settings, customer_id)
    raise ConfigError(
        f"Unknown provider {provider!r}. Supported providers: {', '.join(SUPPORTED)}."
    )
