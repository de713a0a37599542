"""Vultr's provider spec, the light part its entry point names: importing it imports no
client (see optiinfra_tui.providers)."""

from __future__ import annotations

from collections.abc import Mapping

from optiinfra_tui.providers import DefaultSchedule, Field, Option, ProviderSpec
from optiinfra_tui.settings import env_float, env_url

VULTR_API_URL_DEFAULT = "https://api.vultr.com/v2"


def _vultr_api_url(env: Mapping[str, str]) -> str:
    return env_url(env, "VULTR_API_URL", VULTR_API_URL_DEFAULT, ("http", "https")).rstrip("/")


VULTR = ProviderSpec(
    name="vultr",
    title="Vultr",
    data_types=("cost", "account", "resource"),
    default_types=("cost",),
    fields={"api_key_env": Field("the variable holding the customer's Vultr API key",
                                 env=True, secret=True, required=True,
                                 standard="VULTR_API_KEY")},
    collector="optiinfra_tui.collectors.vultr:VultrCollector",
    schedules=(DefaultSchedule(("cost",)),),
    options=(
        Option("VULTR_API_URL", "the Vultr API's base URL (proxies, tests)", _vultr_api_url),
        Option("VULTR_MAX_RPS", "requests per second per API key",
               lambda env: env_float(env, "VULTR_MAX_RPS", 30.0, minimum=0.1)),
    ),
    legacy_keys={"vultr_api_key_env": "api_key_env"},
    # Always offered to the default customer: with no key set, the header and `status` say
    # which variable to set (it was the product's first provider).
    detect=(),
    implicit=True,
    colour="#5fafff",
)
