"""GCP: the Cloud Billing export in BigQuery, read through the REST API as daily FOCUS rows.

GCP has no cost API: customers export billing to a BigQuery table. One run asks BigQuery
(`jobs.query`, then `getQueryResults` pages) for daily sums per service, SKU, project, region,
currency, invoice month and cost type, with the repeated `credits` unnested into rows of their
own. Sums are NUMERIC on the server and travel as text: no float ever holds money here.

Export rows keep arriving for days: each run re-reads the last LATE_DAYS days, plus every
invoice month whose MAX(export_time) moved since the last run, and writes them as windows that
replace what was stored there (rows.Window).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx

from optiinfra_tui.collectors.base import CollectContext, ProviderCollector
from optiinfra_tui.collectors.fields import decode_json, parse_decimal, parse_int
from optiinfra_tui.collectors.gcp_spec import BIGQUERY_API_URL_DEFAULT
from optiinfra_tui.collectors.http import ApiClient, tls_trust
from optiinfra_tui.errors import AuthError, ConfigError, DataError, OptiInfraError, TransientError
from optiinfra_tui.providers import Account
from optiinfra_tui.rows import BIGQUERY_EXPORT, COST_LINES, REPLACE_WINDOW, Batch, CostRow, Window
from optiinfra_tui.settings import Settings
from optiinfra_tui.text import first_line

PROVIDER = "gcp"
INSTALL = 'pip install "optiinfra-tui[gcp]"'
SCOPE = "https://www.googleapis.com/auth/bigquery"
LATE_DAYS = 3  # export rows keep arriving this many days after the usage
PAGE_ROWS = 10_000
# A month's newest export time is looked for among rows exported after the newest one seen
# minus this margin: rows become visible to queries a little after their export_time.
EXPORT_MARGIN = timedelta(days=1)
_STATE_PREFIX = "export_time:"  # state key per invoice month: its MAX(export_time) in µs

_TABLE_RE = re.compile(r"^(?P<project>[A-Za-z0-9][A-Za-z0-9.:_-]{0,127})\.(?P<dataset>\w{1,1024})"
                       r"\.(?P<table>[\w$-]{1,1024})$")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:_-]{0,127}$")
_MONTH_RE = re.compile(r"^(\d{4})(0[1-9]|1[0-2])$")
_RETRY_STATUSES = {408, 425, 429}
# BigQuery answers throttling with 403 as often as with 429: the reason tells.
_RETRY_REASONS = {"rateLimitExceeded", "backendError", "internalError", "quotaExceeded",
                  "jobRateLimitExceeded"}
_CATEGORIES = {"regular": "Usage", "tax": "Tax", "adjustment": "Adjustment",
               "rounding error": "Adjustment"}


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GcpConfig:
    """Where one customer's billing export is and how to reach it; holds no secret."""

    billing_table: str  # project.dataset.table
    job_project: str  # the project query jobs run (and are billed) in
    api_url: str
    key_file: str | None  # path of the service-account JSON; None: not needed (emulator)
    key_file_env: str  # the variable naming it, for messages
    table_env: str = "GCP_BILLING_TABLE"
    project_env: str = "GCP_JOB_PROJECT"


def is_emulator(url: str) -> bool:
    """A plain http:// URL on loopback: a local BigQuery double, which takes no token."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_table(billing_table: str | None, job_project: str | None, table_env: str,
                project_env: str) -> tuple[str, str]:
    """(table, job project: the table's unless given); ConfigError naming the setting."""
    if not billing_table:
        raise ConfigError(
            f"{table_env} is not set: name the Cloud Billing export table as "
            "project.dataset.table (BigQuery console: the dataset chosen under Billing > "
            "Billing export, table gcp_billing_export_v1_... or _resource_v1_...).")
    match = _TABLE_RE.match(billing_table)
    if not match:
        raise ConfigError(f"{table_env}={billing_table!r} is not project.dataset.table "
                          "(e.g. my-project.billing.gcp_billing_export_v1_0123AB_CDEF01_234567).")
    job_project = job_project or match["project"]
    if not _PROJECT_RE.match(job_project):
        raise ConfigError(f"{project_env}={job_project!r} is not a project id.")
    return billing_table, job_project


def gcp_config(settings: Settings, customer_id: str, *,
               service_account_file_env: str | None = None, billing_table: str | None = None,
               job_project: str | None = None) -> GcpConfig:
    """The config of `customer_id`: the default customer's from the environment, any other's from
    the arguments (the TOML's [customers.X.gcp]); ConfigError naming what is missing."""
    env = settings.env
    settings.customer(customer_id)  # ConfigError for an unknown customer
    default = customer_id == settings.default_customer_id
    if default:
        key_env = service_account_file_env or "GOOGLE_APPLICATION_CREDENTIALS"
        table_env, project_env = "GCP_BILLING_TABLE", "GCP_JOB_PROJECT"
        billing_table = billing_table or env.get("GCP_BILLING_TABLE", "").strip()
        job_project = job_project or env.get("GCP_JOB_PROJECT", "").strip()
    else:
        if not service_account_file_env and not billing_table:
            raise ConfigError(
                f"Customer {customer_id!r} has no GCP settings: add [customers.{customer_id}.gcp] "
                "with service_account_file_env, billing_table and job_project to the "
                "OPTIINFRA_CONFIG file.")
        key_env = service_account_file_env or ""
        table_env = f"[customers.{customer_id}.gcp] billing_table"
        project_env = f"[customers.{customer_id}.gcp] job_project"
    api_url = settings.option("BIGQUERY_API_URL")
    billing_table, job_project = check_table(billing_table, job_project, table_env,
                                             project_env)
    key_file = None
    if not is_emulator(api_url):
        if not key_env:
            raise ConfigError(f"Customer {customer_id!r} names no service_account_file_env "
                              "for GCP.")
        key_file = env.get(key_env, "").strip()
        if not key_file:
            raise ConfigError(
                f"{key_env} is not set: export {key_env}=<path of a service-account JSON key> "
                "where the workers run. The account needs BigQuery Data Viewer on the export's "
                "dataset and BigQuery Job User on the job project.")
    return GcpConfig(billing_table, job_project, api_url, key_file, key_env or "", table_env,
                     project_env)


# --- credentials -------------------------------------------------------------------------------


class _Transport:
    """google-auth's transport interface over httpx (google-auth brings none without requests)."""

    def __init__(self, client: httpx.Client) -> None:
        from google.auth import exceptions, transport

        self._client = client
        self._error = exceptions.TransportError

        class Response(transport.Response):
            def __init__(self, resp: httpx.Response) -> None:
                self._resp = resp

            @property
            def status(self) -> int:
                return self._resp.status_code

            @property
            def headers(self) -> Mapping[str, str]:
                return self._resp.headers

            @property
            def data(self) -> bytes:
                return self._resp.content

        self._response = Response

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **_kwargs: Any) -> Any:
        try:
            resp = self._client.request(method, url, content=body, headers=headers,
                                        timeout=timeout or 30)
        except httpx.HTTPError as exc:
            raise self._error(f"{type(exc).__name__}: {exc}") from None
        return self._response(resp)


class ServiceAccount:
    """An access token from a service-account key file, refreshed shortly before it expires."""

    def __init__(self, path: str, env_name: str, client: httpx.Client) -> None:
        try:
            from google.auth import exceptions
            from google.oauth2 import service_account
        except ImportError:
            raise ConfigError(f"GCP collection needs google-auth: {INSTALL}") from None
        self._exceptions = exceptions
        where = f"{env_name}={path}"
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such file. Point it at the service account's "
                              "JSON key.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: can't read it ({type(exc).__name__}).") from None
        except ValueError:
            raise ConfigError(f"{where}: not a JSON key file (IAM > Service accounts > "
                              "Keys > Add key > JSON).") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            kind = info.get("type") if isinstance(info, dict) else None
            raise ConfigError(f"{where}: a {kind or 'non-service-account'} credential; GCP "
                              "collection needs a service account's JSON key.")
        try:
            self._credentials = service_account.Credentials.from_service_account_info(
                info, scopes=[SCOPE])
        except (ValueError, KeyError) as exc:
            # google-auth names the missing fields or the unparsable key, never the key itself.
            raise ConfigError(f"{where}: not a usable service-account key "
                              f"({str(exc)[:200]}).") from None
        self.email = str(info.get("client_email") or "the service account")
        self._env_name = env_name
        self._transport = _Transport(client)

    def __call__(self, force: bool = False) -> str:
        """The access token (a TokenSource), refreshed when it is expired (or `force`)."""
        creds = self._credentials
        if force or not creds.valid:
            try:
                creds.refresh(self._transport)
            except self._exceptions.RefreshError as exc:
                raise AuthError(
                    f"Google refused the service-account key in {self._env_name} for "
                    f"{self.email} ({_short(exc)}): check that the key is current (not deleted "
                    "or disabled) and the account exists.") from None
            except self._exceptions.TransportError as exc:
                raise TransientError(f"Google's token endpoint could not be reached "
                                     f"({_short(exc)}).") from None
        return creds.token or ""


def _short(exc: BaseException) -> str:
    # google-auth's errors carry the server's answer as a dict beside the message: text only.
    return first_line(" ".join(a for a in exc.args if isinstance(a, str)) or type(exc).__name__,
                      200)


# --- the BigQuery REST client ------------------------------------------------------------------


class BigQuery:
    """jobs.query and getQueryResults over REST (the shared ApiClient), with BigQuery's own
    reading of its errors: throttling by reason, refusals naming the roles and settings."""

    def __init__(self, config: GcpConfig, env: Mapping[str, str], *, timeout: float = 60,
                 max_inner_retries: int = 5, max_wait: float = 60.0,
                 backoff_base: float = 0.5) -> None:
        self.config = config
        verify = tls_trust(env)
        # google-auth's token requests go through a client of their own (Google's token host).
        self._token_client = httpx.Client(timeout=timeout, verify=verify)
        self._account = (ServiceAccount(config.key_file, config.key_file_env,
                                        self._token_client) if config.key_file else None)
        self._api = ApiClient(
            config.api_url, self._account or "", None, timeout, max_inner_retries,
            service="BigQuery", url_env="BIGQUERY_API_URL",
            default_url=BIGQUERY_API_URL_DEFAULT, max_wait=max_wait, backoff_base=backoff_base,
            on_error=self._on_error, verify=verify)

    @property
    def requests(self) -> int:
        """Requests sent to BigQuery so far, retries included (the token's aside)."""
        return self._api.requests

    def close(self) -> None:
        self._api.close()
        self._token_client.close()

    def query(self, sql: str, params: list[dict], page_rows: int = PAGE_ROWS,
              job_timeout: float = 1800) -> Iterator[list[dict[str, Any]]]:
        """Pages of result rows as {column: value}; raises unless every row of the answer came."""
        project = self.config.job_project
        page_rows = max(1, page_rows)
        body = self.call("POST", f"projects/{project}/queries", json_body={
            "query": sql, "useLegacySql": False, "parameterMode": "NAMED",
            "queryParameters": params, "maxResults": page_rows, "timeoutMs": 10_000,
            "formatOptions": {"useInt64Timestamp": True}})
        job = body.get("jobReference") or {}
        job_id = job.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise DataError("BigQuery jobs.query answered without a jobReference.jobId.")
        results = f"projects/{project}/queries/{job_id}"
        base = {"maxResults": page_rows, "timeoutMs": 10_000}
        if job.get("location"):
            base["location"] = job["location"]
        deadline = time.monotonic() + job_timeout
        while not body.get("jobComplete"):
            self._raise_job_errors(body)
            if time.monotonic() > deadline:
                raise TransientError(f"BigQuery job {job_id} did not finish within "
                                     f"{job_timeout:g} s.")
            body = self.call("GET", results, params=base)
        self._raise_job_errors(body)
        total = parse_int(body.get("totalRows"), "BigQuery: totalRows", 0)
        received, seen = 0, set()
        while True:
            names = [f.get("name") for f in (body.get("schema") or {}).get("fields", [])]
            rows = body.get("rows") or []
            if not isinstance(rows, list):
                raise DataError("BigQuery query results: 'rows' is not a list.")
            page = [_row(names, r) for r in rows]
            received += len(page)
            if page:
                yield page
            token = body.get("pageToken")
            if not token:
                break
            if token in seen:
                raise DataError(f"BigQuery repeated a page token after {received} rows.")
            seen.add(token)
            body = self.call("GET", results, params={**base, "pageToken": token})
            self._raise_job_errors(body)
        if received != total:
            # A window written from part of its answer would remove the rest from every total.
            raise TransientError(f"BigQuery job {job_id} gave {received} of its {total} rows.")

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             json_body: dict | None = None) -> dict:
        """One request under /bigquery/v2/ answered by a JSON object; throttling and 5xx are
        retried here first."""
        return self._api.request_json(method, f"bigquery/v2/{path}", params, json_body)

    # --- helpers -------------------------------------------------------------------------------

    def _on_error(self, resp: httpx.Response, where: str) -> OptiInfraError | None:
        """BigQuery's failed answer: throttling (429, or 403 by its reason) and 5xx are
        transient, any other refusal says what to fix."""
        error, reason = _error(resp)
        status = resp.status_code
        detail = f"HTTP {status}{f' {reason}' if reason else ''}{f': {error}' if error else ''}"
        if (status >= 500 or status in _RETRY_STATUSES
                or (status == 403 and reason in _RETRY_REASONS)):
            return TransientError(detail)
        return self._failure(where, status, detail)

    def _failure(self, where: str, status: int, detail: str) -> OptiInfraError:
        cfg = self.config
        who = self._account.email if self._account else "the caller"
        if status in (401, 403):
            return AuthError(
                f"{where} was refused ({detail}): give {who} BigQuery Data Viewer "
                f"(roles/bigquery.dataViewer) on the dataset of {cfg.billing_table} and "
                f"BigQuery Job User (roles/bigquery.jobUser) on project {cfg.job_project}.")
        if status == 404:
            return ConfigError(f"{where}: not found ({detail}): check {cfg.table_env} "
                               f"({cfg.billing_table}) and {cfg.project_env} ({cfg.job_project}).")
        if status == 400:
            return ConfigError(
                f"{where} was rejected ({detail}): is {cfg.table_env}={cfg.billing_table} a "
                "Cloud Billing export table (standard or detailed usage cost)?")
        return DataError(f"{where} was rejected ({detail}).")

    def _raise_job_errors(self, body: dict) -> None:
        """A job that failed: BigQuery (and the emulator) may answer 200 with its errors."""
        errors = body.get("errors")
        if not errors or body.get("rows"):
            return
        first = errors[0] if isinstance(errors, list) and isinstance(errors[0], dict) else {}
        reason = str(first.get("reason") or "")
        message = self._api.scrub(str(first.get("message") or "")[:300])
        if reason in _RETRY_REASONS:
            raise TransientError(f"BigQuery query failed ({reason}: {message}).")
        code = {"notFound": 404, "invalidQuery": 400, "invalid": 400, "accessDenied": 403}.get(
            reason, 500)
        raise self._failure("BigQuery query", code, f"HTTP {code} {reason}: {message}")


def _error(resp: httpx.Response) -> tuple[str, str]:
    """BigQuery's error message (short) and first reason."""
    try:
        body = decode_json(resp.content)
    except (ValueError, RecursionError, DataError):
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    errors = error.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(
        errors[0], dict) else {}
    message = error.get("message") or first.get("message") or ""
    reason = first.get("reason") or error.get("status") or ""
    return str(message).strip()[:300], str(reason)


def _row(names: list, row: object) -> dict[str, Any]:
    cells = row.get("f") if isinstance(row, dict) else None
    if not isinstance(cells, list) or len(cells) != len(names):
        raise DataError("BigQuery query results: a row does not match the schema.")
    return {n: (c.get("v") if isinstance(c, dict) else None) for n, c in zip(names, cells,
                                                                            strict=True)}


# --- the queries -------------------------------------------------------------------------------


def months_sql(table: str) -> str:
    """Each invoice month's newest export time, among rows exported after @after."""
    return (f"SELECT invoice.month AS month, "
            f"CAST(UNIX_MICROS(MAX(export_time)) AS STRING) AS exported "
            f"FROM `{table}` WHERE export_time > TIMESTAMP_MICROS(@after) GROUP BY month")


def costs_sql(table: str) -> str:
    """Daily sums of cost, and of credits as rows of their own, over the re-read windows.

    Each row's FLOAT64 is made NUMERIC before summing: the sum is exact on the server and
    reaches us as text.
    """
    keys = ("DATE(usage_start_time) AS day, IFNULL(service.description, '') AS service, "
            "IFNULL(sku.description, '') AS sku, IFNULL(project.id, '') AS project, "
            "IFNULL(location.region, '') AS region, IFNULL(currency, '') AS currency, "
            "IFNULL(invoice.month, '') AS month, IFNULL(cost_type, '') AS cost_type")
    group = "day, service, sku, project, region, currency, month, cost_type"
    where = ("WHERE invoice.month IN UNNEST(@months) "
             "OR DATE(usage_start_time) >= @since")
    return (
        f"SELECT 'cost' AS kind, {keys}, '' AS credit_type, '' AS credit_name, "
        f"CAST(SUM(CAST(cost AS NUMERIC)) AS STRING) AS amount "
        f"FROM `{table}` {where} GROUP BY {group} "
        f"UNION ALL "
        f"SELECT 'credit' AS kind, {keys}, IFNULL(c.type, '') AS credit_type, "
        f"IFNULL(c.name, '') AS credit_name, "
        f"CAST(SUM(CAST(c.amount AS NUMERIC)) AS STRING) AS amount "
        f"FROM `{table}`, UNNEST(credits) AS c {where} "
        f"GROUP BY {group}, credit_type, credit_name")


def _param(name: str, kind: str, value: Any) -> dict:
    if kind == "ARRAY<STRING>":
        return {"name": name, "parameterType": {"type": "ARRAY", "arrayType": {"type": "STRING"}},
                "parameterValue": {"arrayValues": [{"value": v} for v in value]}}
    return {"name": name, "parameterType": {"type": kind}, "parameterValue": {"value": str(value)}}


# --- rows ------------------------------------------------------------------------------------


def invoice_period(month: str) -> date:
    """The billing period of an invoice month 'YYYYMM'."""
    m = _MONTH_RE.match(month or "")
    if not m:
        raise DataError(f"BigQuery: invoice.month {month[:20]!r} is not YYYYMM.")
    return date(int(m[1]), int(m[2]), 1)


def parse_amount(value: object, what: str) -> Decimal:
    """A NUMERIC sum, which BigQuery sends as text: exact, finite, of sane size."""
    if not isinstance(value, str):
        raise DataError(f"{what}: expected a decimal string, got {type(value).__name__}.")
    return parse_decimal(value, what)


def line_id(r: Mapping[str, Any]) -> str:
    """The same group always gets the same id: a digest of every grouping key."""
    key = "\x1f".join(str(r.get(k) or "") for k in (
        "kind", "day", "service", "sku", "project", "region", "currency", "month", "cost_type",
        "credit_type", "credit_name"))
    return f"bq:{r.get('day')}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def parse_cost_row(r: Mapping[str, Any], ctx: CollectContext) -> CostRow:
    """One result row of `costs_sql` as a CostRow."""
    day_text = str(r.get("day") or "")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise DataError(f"BigQuery: usage day {day_text[:20]!r} is not a date.") from None
    start = datetime(day.year, day.month, day.day)
    credit = r.get("kind") == "credit"
    amount = parse_amount(r.get("amount"), f"BigQuery {day_text} {r.get('service')}")
    cost_type = str(r.get("cost_type") or "")
    return CostRow(
        line_id=line_id(r), customer_id=ctx.customer_id, provider_name=PROVIDER,
        billing_account_id=ctx.customer_id, invoice_id="",
        billed_cost=amount, effective_cost=amount,
        # The standard export has no list price: a charge's list cost is what it billed, and
        # a credit has none (it is the gap between list and billed).
        list_cost=Decimal(0) if credit else amount, list_unit_price=Decimal(0),
        billing_currency=str(r.get("currency") or ""),
        charge_period_start=start, charge_period_end=start + timedelta(days=1),
        billing_period=invoice_period(str(r.get("month") or "")),
        charge_category="Credit" if credit else _CATEGORIES.get(cost_type, "Adjustment"),
        charge_description=str((r.get("credit_name") if credit else r.get("sku")) or ""),
        service_name=str(r.get("service") or ""),
        # Our rows have no sub-account column yet: the project goes where a resource would.
        resource_id=str(r.get("project") or ""), resource_name="",
        region_id=str(r.get("region") or ""),
        pricing_quantity=Decimal(0), pricing_unit="",
        is_estimate=False, run_id=ctx.run_id, collected_at=ctx.collected_at,
        source=BIGQUERY_EXPORT,
    )


# --- the collector ---------------------------------------------------------------------------


class GcpCollector(ProviderCollector):
    """Collects one customer's GCP costs from its Cloud Billing export in BigQuery."""

    provider = PROVIDER
    data_types = ("cost",)

    def __init__(self, settings: Settings, customer_id: str, *, account: Account | None = None,
                 page_rows: int | None = None, **config: str) -> None:
        self.customer_id = customer_id
        if account is not None:  # the customer's [customers.X.gcp], or the standard variables
            config = {**account.values, **config}
        self.config = gcp_config(settings, customer_id, **config)  # ConfigError before requests
        self._page_rows = page_rows or PAGE_ROWS
        self._job_timeout = float(settings.task_time_limit)
        self._bq = BigQuery(self.config, settings.env)

    @property
    def requests(self) -> int:
        """Requests made to BigQuery so far (the token's aside)."""
        return self._bq.requests

    def _batches(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        return self._costs(ctx)

    def _probe(self) -> None:
        """A dry run of the months query (BigQuery bills none)."""
        self._bq.call("POST", f"projects/{self.config.job_project}/queries", json_body={
            "query": months_sql(self.config.billing_table), "useLegacySql": False,
            "dryRun": True, "parameterMode": "NAMED",
            "queryParameters": [_param("after", "INT64", 0)]})

    def close(self) -> None:
        self._bq.close()

    def _changed_months(self, state: Mapping[str, str]) -> dict[str, str]:
        """Invoice months whose newest export time differs from the one remembered."""
        seen = [int(v) for k, v in state.items() if k.startswith(_STATE_PREFIX) and v.isdigit()]
        margin = int(EXPORT_MARGIN.total_seconds() * 1_000_000)
        after = max(seen) - margin if seen else 0
        changed: dict[str, str] = {}
        for page in self._bq.query(months_sql(self.config.billing_table),
                                   [_param("after", "INT64", after)], self._page_rows):
            for r in page:
                month, exported = str(r.get("month") or ""), str(r.get("exported") or "")
                invoice_period(month)
                if state.get(_STATE_PREFIX + month) != exported:
                    changed[month] = exported
        return changed

    def _costs(self, ctx: CollectContext) -> Iterator[Batch]:
        changed = self._changed_months(ctx.state)
        today = ctx.collected_at.date()
        since = today - timedelta(days=LATE_DAYS)
        params = [_param("months", "ARRAY<STRING>", sorted(changed)),
                  _param("since", "DATE", since.isoformat())]
        for page in self._bq.query(costs_sql(self.config.billing_table), params,
                                   self._page_rows):
            yield Batch(COST_LINES, [parse_cost_row(r, ctx) for r in page])
        # Only once every row is stored: a run cut short leaves the old figures and state.
        yield Batch(REPLACE_WINDOW, [Window(
            customer_id=ctx.customer_id, provider_name=PROVIDER, source=BIGQUERY_EXPORT,
            billing_periods=tuple(sorted(invoice_period(m) for m in changed)),
            collected_at=ctx.collected_at,
            state={_STATE_PREFIX + m: v for m, v in changed.items()},
            since=datetime(since.year, since.month, since.day))])
