"""Azure `cost`: daily cost by service and charge type from the Cost Management Query API;
`export`: a FOCUS export in Blob storage (azure/export.py).

Two queries per run, ActualCost (billed) and AmortizedCost (effective), over the window from the
first day of the previous month to today, every `nextLink` page of each, merged into one row per
(day, service, charge type, currency) and written as a replacement of that window: Azure revises
its figures for days, and a group can vanish. The token comes from a plain OAuth2
client-credentials POST (no azure-identity: its SDKs read one page and decode money as float).
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote, urlsplit

import httpx

from optiinfra_tui import __version__
from optiinfra_tui.collectors.azure import export as azure_export
from optiinfra_tui.collectors.azure.export import STORAGE_RESOURCE, parse_export_uri
from optiinfra_tui.collectors.azure_spec import ARM_DEFAULT, AUTHORITY_DEFAULT, EXPORT_URI_VAR
from optiinfra_tui.collectors.base import (
    CollectContext,
    ProviderCollector,
    default_customer_only,
    previous_month,
    utc_today,
)
from optiinfra_tui.collectors.fields import (
    decode_json,
    parse_decimal,
    parse_int,
    parse_object,
    parse_text,
)
from optiinfra_tui.collectors.http import (
    ApiClient,
    PageRequest,
    certificate_refused,
    next_link,
    parse_retry_after,
    server_message,
    tls_trust,
    untrusted_certificate,
)
from optiinfra_tui.collectors.ratelimit import key_id, limiter_for
from optiinfra_tui.errors import AuthError, ConfigError, DataError, OptiInfraError, TransientError
from optiinfra_tui.rows import COST_LINES, COST_MANAGEMENT, REPLACE_WINDOW, Batch, CostRow, Window
from optiinfra_tui.settings import Settings
from optiinfra_tui.text import first_line, scrub

PROVIDER = "azure"
DATA_TYPES = ("cost", "export")
API_VERSION = "2023-11-01"
# What a 429 says to wait: Cost Management's own headers (qpu, entity, tenant, client), then
# the standard one; the longest wins.
RETRY_AFTER_HEADERS = ("x-ms-ratelimit-microsoft.costmanagement-*-retry-after", "Retry-After")
QUERIES = (("ActualCost", 0), ("AmortizedCost", 1))  # query type, slot: billed 0, effective 1
MAX_PAGES = 1000  # a link seen twice, or this many pages, fails the run: never a loop
BATCH_ROWS = 1000
TOKEN_MARGIN = 300.0  # seconds before its expiry a cached token is replaced
_ZERO = Decimal(0)
_GUID_OR_DOMAIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,253}$")
_SCOPE_RE = re.compile(r"^/(subscriptions|providers)/[A-Za-z0-9/._:()@-]+$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CATEGORIES = {"usage": "Usage", "purchase": "Purchase", "refund": "Credit", "credit": "Credit",
               "tax": "Tax"}
_REQUIRED_COLUMNS = ("Cost", "UsageDate", "ServiceName", "ChargeType", "Currency")


# --- the account: who we are and what we read -------------------------------------------------


@dataclass(frozen=True)
class AzureAccount:
    """An app registration and the scope it reads; the secret only as an env var's name.

    `table` is where the values were configured (a TOML table), '' for the default customer's
    AZURE_* variables: messages name the setting to fix.
    """

    tenant_id: str
    client_id: str
    client_secret_env: str
    scope: str
    table: str = ""
    export_uri: str = ""  # a FOCUS export in Blob storage, '' if none

    def setting(self, key: str) -> str:
        """Where `key` (tenant_id, client_id, client_secret_env, scope, export_uri) is set."""
        if self.table:
            return f"{key} in [{self.table}]"
        return {"tenant_id": "AZURE_TENANT_ID", "client_id": "AZURE_CLIENT_ID",
                "client_secret_env": "AZURE_CLIENT_SECRET", "scope": "AZURE_COST_SCOPE",
                "export_uri": EXPORT_URI_VAR}[key]


def default_account(env: Mapping[str, str]) -> AzureAccount:
    """The default customer's account from AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_COST_SCOPE
    (the secret in AZURE_CLIENT_SECRET) and AZURE_EXPORT_URI."""
    names = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_COST_SCOPE")
    missing = [n for n in names if not env.get(n, "").strip()]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: Azure needs "
            "an app registration (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET) and the "
            "scope to read (AZURE_COST_SCOPE, e.g. /subscriptions/<subscription id>). Export "
            "them where the workers run.")
    tenant, client, scope = (env[n].strip() for n in names)
    return AzureAccount(tenant, client, "AZURE_CLIENT_SECRET", scope,
                        export_uri=env.get(EXPORT_URI_VAR, "").strip())


def check_account(account: AzureAccount) -> AzureAccount:
    """The account with its scope normalised; ConfigError naming the setting that is wrong."""
    if not _GUID_OR_DOMAIN_RE.match(account.tenant_id):
        raise ConfigError(f"{account.setting('tenant_id')} is not a tenant id: use the "
                          "directory (tenant) id, a GUID, or its domain (contoso.onmicrosoft.com).")
    if not _GUID_OR_DOMAIN_RE.match(account.client_id):
        raise ConfigError(f"{account.setting('client_id')} is not a client id: use the "
                          "application (client) id of the app registration, a GUID.")
    if not _ENV_NAME_RE.match(account.client_secret_env):
        raise ConfigError(f"{account.setting('client_secret_env')} must name an environment "
                          "variable (the secret itself never goes in the configuration).")
    scope = "/" + account.scope.strip().strip("/")
    if not _SCOPE_RE.match(scope) or {".", ".."} & set(scope.split("/")):
        raise ConfigError(
            f"{account.setting('scope')} is not a Cost Management scope: use "
            "/subscriptions/<subscription id>, /subscriptions/<id>/resourceGroups/<name>, "
            "/providers/Microsoft.Billing/billingAccounts/<id> or "
            "/providers/Microsoft.Management/managementGroups/<id>.")
    if account.export_uri:
        parse_export_uri(account.export_uri, account.setting("export_uri"))
    return AzureAccount(account.tenant_id, account.client_id, account.client_secret_env, scope,
                        account.table, account.export_uri.strip())


# --- the token: OAuth2 client credentials, cached until it expires ----------------------------


@dataclass(frozen=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic() after which a new one is fetched


_tokens: dict[tuple[str, ...], _Token] = {}
_token_locks: dict[tuple[str, ...], threading.Lock] = {}
_tokens_lock = threading.Lock()


def _token_key(authority: str, resource: str, account: AzureAccount, secret: str) -> tuple:
    # The secret only as a hash: a new secret is tried at once, not after the old token expires.
    return (authority, account.tenant_id, account.client_id, resource, key_id(secret))


def access_token(authority: str, resource: str, account: AzureAccount, secret: str,
                 verify: ssl.SSLContext | bool = True) -> tuple[str, bool]:
    """A bearer token for `resource` (the ARM URL) and whether it took a request: cached while
    it is valid, one request at a time per app however many threads ask. `verify`: tls_trust."""
    key = _token_key(authority, resource, account, secret)
    with _tokens_lock:
        lock = _token_locks.setdefault(key, threading.Lock())
    with lock:
        token = _tokens.get(key)
        if token is not None and time.monotonic() < token.renew_at:
            return token.value, False
        value, lifetime = _request_token(authority, resource, account, secret, verify)
        margin = min(TOKEN_MARGIN, lifetime / 2)
        _tokens[key] = _Token(value, time.monotonic() + lifetime - margin)
        return value, True


def forget_token(authority: str, resource: str, account: AzureAccount, secret: str) -> None:
    """Drop a cached token the API refused, so the next attempt asks for a new one."""
    with _tokens_lock:
        _tokens.pop(_token_key(authority, resource, account, secret), None)


# AADSTS codes -> what they mean for the user. Unknown codes get every setting named.
_SECRET_CODES = {7000215, 7000222, 7000216}  # invalid, expired, missing client secret
_CLIENT_CODES = {700016, 700024, 7000112}  # app not in the tenant, disabled app
_TENANT_CODES = {90002, 900023, 90019, 90072}  # tenant not found, malformed, not resolvable


def _request_token(authority: str, resource: str, account: AzureAccount, secret: str,
                   verify: ssl.SSLContext | bool) -> tuple[str, float]:
    host = urlsplit(authority).netloc
    url = f"{authority}/{quote(account.tenant_id, safe='')}/oauth2/v2.0/token"
    where = f"Azure AD token request to {host} for tenant {account.tenant_id}"
    form = {"grant_type": "client_credentials", "client_id": account.client_id,
            "client_secret": secret, "scope": f"{resource}/.default"}
    try:
        with httpx.Client(timeout=30, verify=verify,
                          headers={"Accept": "application/json",
                                   "User-Agent": f"optiinfra-tui/{__version__}"}) as client:
            resp = client.post(url, data=form)
    except httpx.TransportError as exc:
        named = authority != AUTHORITY_DEFAULT
        refused = certificate_refused(exc)
        if refused is not None:
            raise untrusted_certificate(where, host, refused,
                                        "AZURE_AUTHORITY_HOST" if named else None) from None
        source = ("AZURE_AUTHORITY_HOST" if named
                  else "the default authority (AZURE_AUTHORITY_HOST is not set)")
        raise TransientError(f"{where}: can't reach {host}, from {source} "
                             f"({type(exc).__name__}). Check the network, or "
                             "AZURE_AUTHORITY_HOST.") from None
    except httpx.RequestError as exc:
        raise DataError(f"{where}: {type(exc).__name__}") from None
    status = resp.status_code
    try:
        body = decode_json(resp.content)
    except (ValueError, RecursionError, DataError):
        body = None
    if status == 200:
        if not isinstance(body, dict):
            raise DataError(f"{where}: the answer (HTTP 200) is not a JSON object.")
        token = body.get("access_token")
        if not isinstance(token, str) or not token.strip():
            raise DataError(f"{where}: the answer holds no access_token.")
        lifetime = parse_int(body.get("expires_in"), f"{where}: expires_in", 3599)
        return token.strip(), float(max(lifetime, 1))
    if status in (408, 429) or status >= 500:
        raise TransientError(f"{where} failed (HTTP {status}).",
                             parse_retry_after(resp.headers.get("Retry-After")))
    if status in (400, 401) and isinstance(body, dict):
        raise _token_refused(where, status, body, account, secret)
    if status == 404:
        raise ConfigError(f"{where} answered 404 Not Found: check AZURE_AUTHORITY_HOST (the "
                          f"Microsoft Entra authority, default {AUTHORITY_DEFAULT}).")
    raise AuthError(f"{where} was refused (HTTP {status}): check {account.setting('tenant_id')},"
                    f" {account.setting('client_id')} and {account.setting('client_secret_env')}.")


def _token_refused(where: str, status: int, body: dict, account: AzureAccount,
                   secret: str) -> Exception:
    """The error for a 400/401 from the token endpoint, naming the setting to check."""
    codes = body.get("error_codes")
    codes = {c for c in codes if isinstance(c, int)} if isinstance(codes, list) else set()
    described = body.get("error_description")
    detail = first_line(described, 240) if isinstance(described, str) else ""
    detail = scrub(detail or str(body.get("error") or "no detail"), (secret,))
    said = f"{where} was refused (HTTP {status}: {detail})"
    secret_var = (account.client_secret_env if not account.table
                  else f"{account.client_secret_env} (named by "
                       f"{account.setting('client_secret_env')})")
    tenant, client = account.setting("tenant_id"), account.setting("client_id")
    if codes & _SECRET_CODES or (body.get("error") == "invalid_client" and not codes):
        return AuthError(f"{said}: check {secret_var}: it must hold a current client secret "
                         f"*value* (not its id) of app {account.client_id} in tenant "
                         f"{account.tenant_id}.")
    if codes & _CLIENT_CODES:
        return AuthError(f"{said}: check {client} ({account.client_id}): the app must be "
                         f"registered, and enabled, in tenant {account.tenant_id} ({tenant}).")
    if codes & _TENANT_CODES:
        return AuthError(f"{said}: check {tenant} ({account.tenant_id}): it must be the "
                         "directory (tenant) id that holds the app registration.")
    if 70011 in codes:  # the scope: our resource URL
        return ConfigError(f"{said}: check AZURE_RESOURCE_MANAGER_URL (the Azure Resource "
                           f"Manager of your cloud, default {ARM_DEFAULT}).")
    return AuthError(f"{said}: check {tenant}, {client} and {secret_var}.")


# --- the answer: columns by name, rows merged ---------------------------------------------------


def charge_category(charge_type: str) -> str:
    """FOCUS ChargeCategory of an Azure ChargeType: Usage, Purchase, Refund/Credit -> Credit,
    Tax; anything else (UnusedReservation, RoundingAdjustment, ...) -> Adjustment."""
    return _CATEGORIES.get(charge_type.strip().lower(), "Adjustment")


def parse_usage_date(value: object, field: str) -> date:
    """UsageDate of a daily answer: the number 20260201, or text '20260201' or '2026-02-01...'."""
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        text = str(parse_int(value, field))
    else:
        text = parse_text(value, field, required=True).strip()
    try:
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        return date.fromisoformat(text[:10])
    except ValueError:
        raise DataError(f"{field} is not a date: {text[:40]!r}") from None


def parse_page(body: dict, where: str) -> Iterator[tuple[date, str, str, str, Decimal]]:
    """(day, service, charge type, currency, cost) of each row of one page, read by column
    name: the order of the columns is the server's to choose."""
    props = parse_object(body.get("properties"), f"{where}: properties")
    columns, rows = props.get("columns"), props.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise DataError(f"{where}: properties.columns and properties.rows must be lists")
    names = [c.get("name") if isinstance(c, dict) else None for c in columns]
    index = {n.lower(): i for i, n in enumerate(names) if isinstance(n, str)}
    missing = [c for c in _REQUIRED_COLUMNS if c.lower() not in index]
    if missing:
        raise DataError(f"{where}: the answer has no {', '.join(missing)} column (columns: "
                        f"{', '.join(str(n) for n in names)[:200]})")
    cost, day, service, charge, currency = (index[c.lower()] for c in _REQUIRED_COLUMNS)
    width = len(columns)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise DataError(f"{where}: row {i} is not a list of {width} values")
        at = f"{where}: row {i}"
        try:
            yield (parse_usage_date(row[day], "UsageDate"),
                   parse_text(row[service], "ServiceName").strip(),
                   parse_text(row[charge], "ChargeType", required=True).strip(),
                   parse_text(row[currency], "Currency", required=True).strip().upper(),
                   parse_decimal(row[cost], "Cost"))
        except DataError as exc:
            raise DataError(f"{at}: {exc}") from None


def query_body(kind: str, start: date, today: date) -> dict:
    """One query: `kind` cost per day by service and charge type, from `start` to `today`."""
    return {
        "type": kind,
        "timeframe": "Custom",
        "timePeriod": {"from": f"{start.isoformat()}T00:00:00+00:00",
                       "to": f"{today.isoformat()}T23:59:59+00:00"},
        "dataset": {
            "granularity": "Daily",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [{"type": "Dimension", "name": "ServiceName"},
                         {"type": "Dimension", "name": "ChargeType"}],
        },
    }


def cost_row(key: tuple[date, str, str, str], amounts: list[Decimal], ctx: CollectContext,
             scope: str, open_month: date) -> CostRow:
    """One merged (day, service, charge type, currency) group as a CostRow."""
    day, service, charge_type, currency = key
    month = day.replace(day=1)
    start = datetime(day.year, day.month, day.day)
    billed, effective = amounts
    return CostRow(
        # The service last: it is the one free text, so no two keys make one id.
        line_id=f"cm:{day.isoformat()}:{charge_type}:{currency}:{service}",
        customer_id=ctx.customer_id, provider_name=PROVIDER, billing_account_id=scope,
        invoice_id="", billed_cost=billed, effective_cost=effective,
        # No list price in a Query answer: a charge's list cost is what it billed.
        list_cost=billed, list_unit_price=_ZERO, billing_currency=currency,
        charge_period_start=start, charge_period_end=start + timedelta(days=1),
        billing_period=month, charge_category=charge_category(charge_type),
        charge_description=f"{service} ({charge_type})", service_name=service,
        resource_id="", resource_name="", region_id="", pricing_quantity=_ZERO,
        pricing_unit="", is_estimate=month >= open_month, run_id=ctx.run_id,
        collected_at=ctx.collected_at, source=COST_MANAGEMENT)


# --- the collector ------------------------------------------------------------------------------


class AzureCollector(ProviderCollector):
    """Collects one customer's Azure costs. `requests` counts the HTTP requests sent."""

    provider = PROVIDER
    data_types = DATA_TYPES
    # Which day it is for the window (tests bring their own).
    clock = staticmethod(utc_today)

    def __init__(self, settings: Settings, customer_id: str,
                 account: AzureAccount | None = None) -> None:
        """ConfigError here, before any request, for anything missing or malformed."""
        if account is None:
            default_customer_only(settings, customer_id, PROVIDER, "Azure",
                                  "tenant_id, client_id, client_secret_env and scope")
            account = default_account(settings.env)
        self.account = check_account(account)
        self.customer_id = customer_id
        env = settings.env
        self._authority = settings.option("AZURE_AUTHORITY_HOST")
        self._arm = settings.option("AZURE_RESOURCE_MANAGER_URL")
        secret_env = self.account.client_secret_env
        self._secret = env.get(secret_env, "").strip()
        if not self._secret:
            named = "" if not self.account.table else (
                f" (named by {self.account.setting('client_secret_env')})")
            raise ConfigError(
                f"{secret_env}{named} is not set: the client secret of app "
                f"{self.account.client_id} for customer {customer_id!r} is missing. Export "
                f"{secret_env}=<the secret's value> where the workers run.")
        # Cost Management throttles per app and scope: every thread of the process shares it.
        self._limiter = limiter_for(
            f"azure:{self.account.tenant_id}:{self.account.client_id}:{self.account.scope}",
            float(settings.option("AZURE_MAX_RPS")))
        self._verify = tls_trust(env)
        self._tokens = 0
        self._client: ApiClient | None = None
        self._storage: ApiClient | None = None

    def __repr__(self) -> str:
        return f"AzureCollector(customer_id={self.customer_id!r}, scope={self.account.scope!r})"

    @property
    def requests(self) -> int:
        """HTTP requests sent to Azure so far (token requests and retries included; not the
        export's file reads, which ClickHouse makes)."""
        return self._tokens + sum(c.requests for c in (self._client, self._storage)
                                  if c is not None)

    def _batches(self, data_type: str, ctx: CollectContext) -> Iterator[Batch]:
        if data_type == "cost":
            return self._costs(ctx, self.clock())
        account = self.account
        if not account.export_uri:
            raise ConfigError(
                f"Customer {self.customer_id!r} has no Azure FOCUS export configured: set "
                f"{EXPORT_URI_VAR}={azure_export.EXAMPLE} (the default customer) or export_uri "
                f"in [customers.{self.customer_id}.azure].")
        setting = account.setting("export_uri")
        location = parse_export_uri(account.export_uri, setting)
        return azure_export.collect(
            self._blobs(location), location, ctx, PROVIDER, self.clock().replace(day=1),
            lambda: {"Authorization": f"Bearer {self._storage_token(False)}",
                     "x-ms-version": azure_export.STORAGE_VERSION}, setting)

    def _probe(self) -> None:
        """A token and one cheap read on the scope (its exports: no query cost)."""
        self._api().get_json(f"{self._scope_path()}/providers/Microsoft.CostManagement/exports",
                             {"api-version": API_VERSION})

    def close(self) -> None:
        """Closes its clients, which stay to be counted: a closed collector sends no more."""
        for client in (self._client, self._storage):
            if client is not None:
                client.close()

    # --- helpers ---------------------------------------------------------------------------------

    def _scope_path(self) -> str:
        return quote(self.account.scope, safe="/:@()._-")

    def _api(self) -> ApiClient:
        if self._client is None:
            token, fetched = access_token(self._authority, self._arm, self.account,
                                          self._secret, self._verify)
            self._tokens += fetched
            account = self.account
            self._client = ApiClient(
                self._arm, token, self._limiter,
                service="Azure Cost Management",
                url_env="AZURE_RESOURCE_MANAGER_URL",
                url_hint=f"and {account.setting('scope')}={account.scope}",
                default_url=ARM_DEFAULT,
                retry_after_headers=RETRY_AFTER_HEADERS,
                on_error=self._refused,
                verify=self._verify,
            )
        return self._client

    def _storage_token(self, force: bool) -> str:
        """A token for Blob storage (the export), a fresh one after a 401 (`force`)."""
        if force:
            forget_token(self._authority, STORAGE_RESOURCE, self.account, self._secret)
        token, fetched = access_token(self._authority, STORAGE_RESOURCE, self.account,
                                      self._secret, self._verify)
        self._tokens += fetched
        return token

    def _blobs(self, location: azure_export.ExportLocation) -> ApiClient:
        """The client of the export's storage account, with the app's storage token."""
        if self._storage is None:
            account, setting = self.account, self.account.setting("export_uri")
            # No pacing: a storage account takes thousands of requests a second, and these
            # are a listing and a manifest per changed month.
            self._storage = ApiClient(
                location.account_url, self._storage_token, None,
                service="Azure Blob Storage", url_env=setting,
                on_error=lambda resp, where: azure_export.refusal(
                    resp, where, location, setting, account.client_id,
                    account.setting("tenant_id")),
                verify=self._verify, headers={"x-ms-version": azure_export.STORAGE_VERSION})
        return self._storage

    def _refused(self, resp: httpx.Response, where: str) -> OptiInfraError | None:
        """A refusal says what to check instead of the secret: the tenant (401), the role (403)."""
        account, status = self.account, resp.status_code
        if status == 401:
            fix = (f"the token of app {account.client_id} from tenant {account.tenant_id} is not "
                   f"accepted for {account.scope}: check {account.setting('tenant_id')} is the "
                   "tenant that holds this scope")
        elif status == 403:
            fix = (f"give app {account.client_id} the Cost Management Reader role on "
                   f"{account.scope} (Access control (IAM) of that scope), then wait a few "
                   "minutes for it to apply")
        else:
            return None
        return AuthError(f"{where} was refused (HTTP {status}{server_message(resp)}): {fix}")

    def _pages(self, body: dict) -> Iterator[dict]:
        """Every page of one query; a repeated link or too many pages is a DataError, so an
        incomplete answer never replaces a window."""
        follow = next_link("properties", "nextLink")
        seen: set[str] = set()

        def next_page(page: dict, request: PageRequest) -> PageRequest | None:
            following = follow(page, request)
            if following is not None:
                if following.url in seen:
                    raise DataError("Azure Cost Management sent the same nextLink twice: the "
                                    "answer is incomplete, so the window is not replaced.")
                if len(seen) + 1 >= MAX_PAGES:
                    raise DataError(f"Azure Cost Management's answer ran past {MAX_PAGES} "
                                    "pages: the window is not replaced.")
                seen.add(following.url)
            return following

        path = f"{self._scope_path()}/providers/Microsoft.CostManagement/query"
        first = PageRequest(path, {"api-version": API_VERSION}, body)
        try:
            yield from self._api().pages(first, next_page, max_pages=MAX_PAGES + 1)
        except AuthError:
            forget_token(self._authority, self._arm, self.account, self._secret)
            raise

    def _costs(self, ctx: CollectContext, today: date) -> Iterator[Batch]:
        this_month = today.replace(day=1)
        start = previous_month(this_month)
        periods = (start, this_month)
        # Both answers are held, merged, before anything is written: a window is written whole
        # or not at all. It is daily totals per service: thousands of groups, not line items.
        merged: dict[tuple[date, str, str, str], list[Decimal]] = {}
        for kind, slot in QUERIES:
            where = f"Azure Cost Management {kind} query"
            for number, page in enumerate(self._pages(query_body(kind, start, today)), 1):
                for day, service, charge_type, currency, cost in parse_page(
                        page, f"{where}, page {number}"):
                    if day.replace(day=1) not in periods:
                        raise DataError(f"{where}: a row for {day}, outside the window "
                                        f"{start}..{today}")
                    amounts = merged.setdefault((day, service, charge_type, currency),
                                                [_ZERO, _ZERO])
                    amounts[slot] += cost
        rows = [cost_row(key, merged[key], ctx, self.account.scope, this_month)
                for key in sorted(merged)]
        for i in range(0, len(rows), BATCH_ROWS):
            yield Batch(COST_LINES, rows[i:i + BATCH_ROWS])
        yield Batch(REPLACE_WINDOW, [Window(ctx.customer_id, PROVIDER, COST_MANAGEMENT, periods,
                                            ctx.collected_at, {})])
