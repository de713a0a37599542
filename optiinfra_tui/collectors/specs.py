"""The providers this package ships, as the light specs its entry points name (pyproject's
`optiinfra_tui.providers` group). Importing this module imports no provider SDK."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.providers import Account, DefaultSchedule, Field, Option, ProviderSpec
from optiinfra_tui.settings import env_float, env_url

VULTR_API_URL_DEFAULT = "https://api.vultr.com/v2"
BIGQUERY_API_URL_DEFAULT = "https://bigquery.googleapis.com"
AUTHORITY_DEFAULT = "https://login.microsoftonline.com"
ARM_DEFAULT = "https://management.azure.com"
AZURE_MAX_RPS_DEFAULT = 1.0  # Cost Management answers 429 after a handful of quick queries


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


def _aws_account(account: Account, env: Mapping[str, str]):
    from optiinfra_tui.collectors.aws import AwsAccount

    return AwsAccount(**dict(account.values))


def _aws_missing(account: Account, env: Mapping[str, str]) -> str | None:
    for key in ("access_key_id_env", "secret_access_key_env"):
        var = account.get(key)
        if var and not env.get(var, "").strip():
            return var
    # Otherwise botocore's chain: only a half-set standard pair is known to be missing
    # without a network call (a profile or an instance role is found at collection).
    if (account.standard and env.get("AWS_ACCESS_KEY_ID", "").strip()
            and not env.get("AWS_SECRET_ACCESS_KEY", "").strip()):
        return "AWS_SECRET_ACCESS_KEY"
    return None


def _aws_max_requests(env: Mapping[str, str]) -> int:
    from optiinfra_tui.collectors.aws import max_requests

    return max_requests(env)


AWS = ProviderSpec(
    name="aws",
    title="AWS",
    data_types=("cost", "export"),
    default_types=("cost",),
    fields={
        "access_key_id_env": Field("the variable holding the access key id", env=True,
                                   secret=True),
        "secret_access_key_env": Field("the variable holding the secret access key", env=True,
                                       secret=True),
        "role_arn": Field("an IAM role to assume (optional)"),
        "export_uri": Field("the Data Export, s3://bucket/prefix/export-name (optional)",
                            standard="AWS_EXPORT_URI"),
    },
    collector="optiinfra_tui.collectors.aws.collector:AwsCollector",
    # Cost Explorer bills every request: four runs a day, not one every 15 minutes.
    schedules=(DefaultSchedule(("cost",), interval=6 * 3600),),
    extra="aws",
    sdk=("botocore",),
    options=(Option("AWS_CE_MAX_REQUESTS", "Cost Explorer requests one run may send",
                    _aws_max_requests),),
    # botocore's default chain, as far as it can be seen without a network call; on an
    # instance role alone, an empty [customers.<default id>.aws] table says to use it.
    detect=("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_EXPORT_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
    secret_vars=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    colour="#ffaf00",
    parse=_aws_account,
    missing=_aws_missing,
)


def _gcp_account(account: Account, env: Mapping[str, str]) -> Account:
    from optiinfra_tui.collectors.gcp import check_table

    where = (("GCP_BILLING_TABLE", "GCP_JOB_PROJECT") if account.standard
             else ("billing_table", "job_project"))
    check_table(account.get("billing_table"), account.get("job_project"), *where)
    return account


def _gcp_missing(account: Account, env: Mapping[str, str]) -> str | None:
    from optiinfra_tui.collectors.gcp import is_emulator

    if is_emulator(env.get("BIGQUERY_API_URL", "").strip() or BIGQUERY_API_URL_DEFAULT):
        return None  # a local BigQuery double takes no token
    var = account.get("service_account_file_env")
    if not var:
        return "service_account_file_env"
    return None if env.get(var, "").strip() else var


def _bigquery_api_url(env: Mapping[str, str]) -> str:
    return env_url(env, "BIGQUERY_API_URL", BIGQUERY_API_URL_DEFAULT,
                   ("http", "https")).rstrip("/")


GCP = ProviderSpec(
    name="gcp",
    title="GCP",
    data_types=("cost",),
    default_types=("cost",),
    fields={
        "service_account_file_env": Field(
            "the variable holding the path of a service-account JSON key", env=True,
            standard="GOOGLE_APPLICATION_CREDENTIALS"),
        "billing_table": Field("the Cloud Billing export table, project.dataset.table",
                               required=True, standard="GCP_BILLING_TABLE"),
        "job_project": Field("the project query jobs run in (default: the table's)",
                             standard="GCP_JOB_PROJECT"),
    },
    collector="optiinfra_tui.collectors.gcp:GcpCollector",
    # Every query is billed by the bytes it scans, and the export refreshes a few times a day.
    schedules=(DefaultSchedule(("cost",), interval=6 * 3600),),
    extra="gcp",
    sdk=("google.auth",),
    options=(Option("BIGQUERY_API_URL", "the BigQuery API's address (a local double in tests)",
                    _bigquery_api_url),),
    # GOOGLE_APPLICATION_CREDENTIALS alone serves many Google tools: the billing table is the
    # sign that the default customer's GCP costs are wanted.
    detect=("GCP_BILLING_TABLE",),
    colour="#5fd75f",
    parse=_gcp_account,
    missing=_gcp_missing,
)


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


def azure_max_rps(env: Mapping[str, str]) -> float:
    raw = env.get("AZURE_MAX_RPS", "").strip()
    if not raw:
        return AZURE_MAX_RPS_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"AZURE_MAX_RPS={raw!r}: not a positive number. Set it to the Cost "
                          "Management requests per second to allow (default "
                          f"{AZURE_MAX_RPS_DEFAULT:g}).")
    return value


def _azure_account(account: Account, env: Mapping[str, str]):
    from optiinfra_tui.collectors.azure import AzureAccount, check_account, default_account

    v = account.values
    if account.standard and not all(v.get(k) for k in ("tenant_id", "client_id", "scope")):
        default_account(env)  # ConfigError naming the AZURE_* variables to set
    table = "" if account.standard else f"customers.{account.customer_id}.azure"
    return check_account(AzureAccount(v["tenant_id"], v["client_id"], v["client_secret_env"],
                                      v["scope"], table))


AZURE = ProviderSpec(
    name="azure",
    title="Azure",
    data_types=("cost",),
    default_types=("cost",),
    fields={
        "tenant_id": Field("the directory (tenant) id", required=True,
                           standard="AZURE_TENANT_ID"),
        "client_id": Field("the app registration's application (client) id", required=True,
                           standard="AZURE_CLIENT_ID"),
        "client_secret_env": Field("the variable holding the app's client secret", env=True,
                                   secret=True, required=True, standard="AZURE_CLIENT_SECRET"),
        "scope": Field("the Cost Management scope, e.g. /subscriptions/<id>", required=True,
                       standard="AZURE_COST_SCOPE"),
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
        Option("AZURE_MAX_RPS", "Cost Management requests per second", azure_max_rps),
    ),
    # The scope is the sign that the default customer's Azure costs are wanted: tenant and
    # client ids alone serve many Azure tools.
    detect=("AZURE_COST_SCOPE",),
    colour="#af87ff",
    parse=_azure_account,
)
