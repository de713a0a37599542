"""Azure's provider spec, the light part its entry point names, and the settings it checks at
start (see optiinfra_tui.providers)."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.providers import Account, DefaultSchedule, Field, Option, ProviderSpec
from optiinfra_tui.settings import env_float

AUTHORITY_DEFAULT = "https://login.microsoftonline.com"
ARM_DEFAULT = "https://management.azure.com"
EXPORT_URI_VAR = "AZURE_EXPORT_URI"  # the default customer's FOCUS export in Blob storage
AZURE_MAX_RPS_DEFAULT = 1.0  # Cost Management answers 429 after a handful of quick queries


def https_url(env: Mapping[str, str], var: str, default: str) -> str:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        # Never echo the value: a URL may carry a password.
        raise ConfigError(f"{var} must be an https:// URL (scheme {parts.scheme or '(none)'!r} "
                          f"given): the credential goes with every request. Default: {default}.")
    return raw.rstrip("/")


def _azure_account(account: Account, env: Mapping[str, str]):
    from optiinfra_tui.collectors.azure import AzureAccount, check_account, default_account

    v = account.values
    if account.standard and not all(v.get(k) for k in ("tenant_id", "client_id", "scope")):
        default_account(env)  # ConfigError naming the AZURE_* variables to set
    table = "" if account.standard else f"customers.{account.customer_id}.azure"
    return check_account(AzureAccount(v["tenant_id"], v["client_id"], v["client_secret_env"],
                                      v["scope"], table, v.get("export_uri", "")))


AZURE = ProviderSpec(
    name="azure",
    title="Azure",
    data_types=("cost", "export"),
    default_types=("cost",),  # an export is collected where one is configured, when asked
    fields={
        "tenant_id": Field("the directory (tenant) id", required=True,
                           standard="AZURE_TENANT_ID"),
        "client_id": Field("the app registration's application (client) id", required=True,
                           standard="AZURE_CLIENT_ID"),
        "client_secret_env": Field("the variable holding the app's client secret", env=True,
                                   secret=True, required=True, standard="AZURE_CLIENT_SECRET"),
        "scope": Field("the Cost Management scope, e.g. /subscriptions/<id>", required=True,
                       standard="AZURE_COST_SCOPE"),
        "export_uri": Field("a FOCUS export in Blob storage, https://<account>.blob.core."
                            "windows.net/<container>/<folder>/<export name> (optional)",
                            standard=EXPORT_URI_VAR),
    },
    collector="optiinfra_tui.collectors.azure:AzureCollector",
    # Cost Management refreshes a few times a day and throttles early.
    schedules=(DefaultSchedule(("cost",), interval=6 * 3600),),
    extra="azure",  # empty: the token is a plain OAuth2 request over httpx
    options=(
        Option("AZURE_AUTHORITY_HOST", "Microsoft Entra's authority (https)",
               lambda env: https_url(env, "AZURE_AUTHORITY_HOST", AUTHORITY_DEFAULT)),
        Option("AZURE_RESOURCE_MANAGER_URL", "Azure Resource Manager (https)",
               lambda env: https_url(env, "AZURE_RESOURCE_MANAGER_URL", ARM_DEFAULT)),
        Option("AZURE_MAX_RPS", "Cost Management requests per second",
               lambda env: env_float(env, "AZURE_MAX_RPS", AZURE_MAX_RPS_DEFAULT, minimum=0.01)),
    ),
    # The scope (or an export) is the sign that the default customer's Azure costs are wanted:
    # tenant and client ids alone serve many Azure tools.
    detect=("AZURE_COST_SCOPE", EXPORT_URI_VAR),
    colour="#af87ff",
    parse=_azure_account,
)
