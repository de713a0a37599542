"""GCP's provider spec, the light part its entry point names: importing it imports no
google-auth (see optiinfra_tui.providers)."""

from __future__ import annotations

from collections.abc import Mapping

from optiinfra_tui.providers import Account, DefaultSchedule, Field, Option, ProviderSpec
from optiinfra_tui.settings import env_url

BIGQUERY_API_URL_DEFAULT = "https://bigquery.googleapis.com"


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
