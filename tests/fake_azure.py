"""A local HTTPS double of Azure: the Microsoft Entra token endpoint and the Cost Management Query
API, answering from a seeded truth, with nextLink pages, 429s and refusals on demand; and a
storage account's Blob service (tests/fake_azure_blob.py), path-style as emulators serve it.

TLS with a self-signed certificate made by `make_certificate` (the `openssl` command): point
SSL_CERT_FILE at it, as a proxy's CA would be. Every endpoint lives on one host:
AZURE_AUTHORITY_HOST and AZURE_RESOURCE_MANAGER_URL are both `url`; the storage account is
`url/<account>`. A token is good for the audience (scope) it was asked for only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fake_azure_blob import STORAGE_AUDIENCE, BlobService
from fake_vultr import to_json
from local_server import LocalServer, wrap_tls
from services import missing

API_VERSION = "2023-11-01"
KINDS = ("ActualCost", "AmortizedCost")
# The servers' column orders differ per query type: a client must read them by name.
_COLUMNS = {
    "ActualCost": [("Cost", "Number"), ("UsageDate", "Number"), ("ServiceName", "String"),
                   ("ChargeType", "String"), ("Currency", "String")],
    "AmortizedCost": [("ServiceName", "String"), ("Currency", "String"), ("Cost", "Number"),
                      ("CostUSD", "Number"), ("ChargeType", "String"), ("UsageDate", "String")],
}
_USAGE = ("Virtual Machines", "Storage", "Azure App Service", "Bandwidth")
_EUR_SERVICE = "Azure Cosmos DB"  # billed in EUR: currencies are never added together


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost and its key, made with `openssl` (the
    test skips without it, or fails where services are required)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing("openssl (to make a test certificate)")
    cert, key = folder / "azure-double.pem", folder / "azure-double.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass(frozen=True)
class Request:
    """One request as the double saw it (never a secret: the form's secret is left out)."""

    t: float  # time.monotonic() when it arrived
    method: str
    path: str
    query: dict[str, str]
    status: int
    body: dict | None  # the JSON query, or the token form without client_secret
    version: str = ""  # the x-ms-version header it carried


Key = tuple[date, str, str, str]  # day, service, charge type, currency


class FakeAzure(LocalServer):
    """A seeded subscription whose costs run from the first day of `today`'s previous month
    to `today`, billed in `currency` (one service always in EUR)."""

    def __init__(self, cert: tuple[Path, Path], today: date, *, seed: int = 0,
                 page_size: int = 25, currency: str = "USD",
                 purchase: Decimal = Decimal("98765432109.876543")) -> None:
        self._cert = cert
        self.today = today
        self.page_size = page_size
        self.currency = currency
        self.purchase = purchase  # a reservation bought on each month's first day
        self.tenant = str(uuid.uuid4())
        self.client_id = str(uuid.uuid4())
        self.secret = secrets.token_urlsafe(24)
        self.scope = f"/subscriptions/{uuid.uuid4()}"
        self.token_lifetime = 3599
        self.denied = False  # 403 on the scope: the app lacks the role
        self.resource: str | None = None  # the ARM its tokens are for; None: this double
        self.requests: list[Request] = []
        self.issued: dict[str, float] = {}  # access token -> monotonic expiry
        self.audience: dict[str, str] = {}  # access token -> the resource it is for
        self.blob = BlobService(self)
        # Per query type, per group: the amount the server holds.
        self.truth: dict[str, dict[Key, Decimal]] = {k: {} for k in KINDS}
        self._throttle: list[tuple[int, int, dict[str, str]]] = []  # (from query n, times, hdrs)
        self._queries = 0
        self._lock = threading.Lock()
        self._seed(random.Random(seed))

    # --- the truth ------------------------------------------------------------------------------

    @property
    def start(self) -> date:
        return (self.today.replace(day=1) - timedelta(days=1)).replace(day=1)

    def _seed(self, rnd: random.Random) -> None:
        def amount(low: int, high: int) -> Decimal:
            return Decimal(rnd.randint(low, high)).scaleb(-6)

        day = self.start
        while day <= self.today:
            for service in _USAGE:
                billed = amount(10_000, 90_000_000)
                self._set(day, service, "Usage", self.currency, billed, billed)
            if day.day % 3 == 0:
                cosmos = amount(1_000, 5_000_000)
                self._set(day, _EUR_SERVICE, "Usage", "EUR", cosmos, cosmos)
            if day.day == 1:
                # A reservation bought: billed as a purchase, amortized into the month's usage.
                self._set(day, "Virtual Machines", "Purchase", self.currency, self.purchase,
                          None)
                self._set(day, "Virtual Machines", "UnusedReservation", self.currency, None,
                          amount(1, 3_000_000))
                self._set(day, "Tax", "Tax", self.currency, amount(100_000, 900_000), None)
            if day.day in (5, 20):  # a refund: a credit, in both views
                refund = -amount(1_000_000, 40_000_000)
                self._set(day, "Azure App Service", "Refund", self.currency, refund, refund)
            day += timedelta(days=1)

    def _set(self, day: date, service: str, charge_type: str, currency: str,
             actual: Decimal | None, amortized: Decimal | None) -> None:
        for kind, value in zip(KINDS, (actual, amortized), strict=True):
            if value is not None:
                self.truth[kind][(day, service, charge_type, currency)] = value

    def set_group(self, key: Key, actual: Decimal | None, amortized: Decimal | None) -> None:
        """Change one group (None: absent from that query's answer)."""
        with self._lock:
            for kind, value in zip(KINDS, (actual, amortized), strict=True):
                if value is None:
                    self.truth[kind].pop(key, None)
                else:
                    self.truth[kind][key] = value

    def groups(self) -> dict[Key, tuple[Decimal, Decimal]]:
        """Every group: (ActualCost, AmortizedCost), 0 where a query has none."""
        keys = set(self.truth["ActualCost"]) | set(self.truth["AmortizedCost"])
        zero = Decimal(0)
        return {k: (self.truth["ActualCost"].get(k, zero), self.truth["AmortizedCost"].get(k, zero))
                for k in keys}

    def totals(self, by: str, kind: str = "ActualCost") -> dict[tuple[str, str], Decimal]:
        """(day or service, currency) -> the sum of one query type's amounts."""
        out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for (day, service, _charge, currency), value in self.truth[kind].items():
            out[(day.isoformat() if by == "day" else service, currency)] += value
        return dict(out)

    # --- faults ---------------------------------------------------------------------------------

    def throttle(self, at: int, times: int = 1, **headers: str) -> None:
        """Answer 429 with `headers` to query requests number `at` (1-based, pages included,
        counted from now) and the `times - 1` after it."""
        with self._lock:
            self._throttle.append((self._queries + at, times, headers))

    def queries(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/Microsoft.CostManagement/query")]

    def token_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/oauth2/v2.0/token")]

    def token_for(self, auth: str, audience: str) -> bool:
        """Whether an Authorization header holds a live token issued for `audience`."""
        token = auth[7:] if auth.startswith("Bearer ") else ""
        return self.issued.get(token, 0) >= time.monotonic() and (
            self.audience.get(token) == audience)

    @property
    def arm(self) -> str:
        """The resource ARM tokens are for."""
        return self.resource or self.url

    # --- lifecycle ------------------------------------------------------------------------------

    def start_server(self) -> FakeAzure:
        self._serve(wrap_tls(ThreadingHTTPServer(("127.0.0.1", 0), _Handler), self._cert),
                    "fake-azure")
        return self

    def __enter__(self) -> FakeAzure:
        return self.start_server()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The default customer's Azure variables for this double."""
        return {"AZURE_TENANT_ID": self.tenant, "AZURE_CLIENT_ID": self.client_id,
                "AZURE_CLIENT_SECRET": self.secret, "AZURE_COST_SCOPE": self.scope,
                "AZURE_AUTHORITY_HOST": self.url, "AZURE_RESOURCE_MANAGER_URL": self.url,
                "AZURE_MAX_RPS": "200"}

    # --- request handling -----------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        seen = time.monotonic()
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if self.blob.serves(parts.path):
            with self._lock:
                status, data, headers = self.blob.answer(method, parts.path, query,
                                                         handler.headers)
                self.requests.append(Request(seen, method, parts.path, query, status, None,
                                             handler.headers.get("x-ms-version", "")))
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if method != "HEAD":
                handler.wfile.write(data)
            return
        with self._lock:
            status, body, headers, shown = self._answer(
                method, parts.path, query, raw, handler.headers.get("Authorization", ""),
                handler.headers.get("Content-Type", ""))
            self.requests.append(Request(seen, method, parts.path, query, status, shown))
        data = body.encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, method: str, path: str, query: dict, raw: bytes, auth: str,
                content_type: str) -> tuple[int, str, dict, dict | None]:
        if method == "POST" and path.endswith("/oauth2/v2.0/token"):
            return self._token(path, raw, content_type)
        if not self.token_for(auth, self.arm):
            return (401, _arm_error("InvalidAuthenticationToken", "The access token is invalid."),
                    {}, None)
        scope = "/" + path.strip("/").split("/providers/Microsoft.CostManagement/")[0].strip("/")
        if scope != self.scope:
            return (404, _arm_error("SubscriptionNotFound",
                                    f"The subscription '{scope}' could not be found."), {}, None)
        if self.denied:
            return (403, _arm_error(
                "AuthorizationFailed",
                f"The client '{self.client_id}' with object id '{uuid.uuid4()}' does not have "
                "authorization to perform action 'Microsoft.CostManagement/query/action' over "
                f"scope '{self.scope}' or the scope is invalid. If access was recently granted, "
                "please refresh your credentials."), {}, None)
        if method == "GET" and path.endswith("/providers/Microsoft.CostManagement/exports"):
            return 200, to_json({"value": []}), {}, None
        if method != "POST" or not path.endswith("/providers/Microsoft.CostManagement/query"):
            return 404, _arm_error("NotFound", f"No route for {method} {path}."), {}, None
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, _arm_error("BadRequest", "The body is not JSON."), {}, None
        self._queries += 1
        for first, times, headers in self._throttle:
            if first <= self._queries < first + times:
                return (429, _arm_error("429", "Too many requests. Please retry."), headers,
                        body)
        if query.get("api-version") != API_VERSION:
            return 400, _arm_error("BadRequest", "Unsupported api-version."), {}, body
        try:
            return 200, self._query(body, query.get("$skiptoken")), {}, body
        except ValueError as exc:
            return 400, _arm_error("BadRequest", str(exc)), {}, body

    def _token(self, path: str, raw: bytes, content_type: str) -> tuple[int, str, dict, dict]:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        shown = {k: v for k, v in form.items() if k != "client_secret"}
        tenant = path.strip("/").split("/")[0]
        if "x-www-form-urlencoded" not in content_type or (
                form.get("grant_type") != "client_credentials"):
            return 400, _aad_error("invalid_request", 900144, "The request body must contain "
                                   "the following parameter: 'grant_type'."), {}, shown
        if tenant != self.tenant:
            return 400, _aad_error("invalid_request", 90002, f"Tenant '{tenant}' not found. "
                                   "Check to make sure you have the correct tenant ID."), {}, shown
        if form.get("client_id") != self.client_id:
            return 400, _aad_error(
                "unauthorized_client", 700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the "
                f"directory '{tenant}'."), {}, shown
        if form.get("client_secret") != self.secret:
            return 401, _aad_error(
                "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                f"'{self.client_id}'."), {}, shown
        scope = form.get("scope", "")
        audience = scope.removesuffix("/.default")
        if scope == audience or audience not in (self.arm, STORAGE_AUDIENCE):
            return 400, _aad_error("invalid_scope", 70011, "The provided value for the input "
                                   "parameter 'scope' is not valid."), {}, shown
        token = "eyJ0" + secrets.token_urlsafe(32)
        self.issued[token] = time.monotonic() + self.token_lifetime
        self.audience[token] = audience
        return 200, to_json({"token_type": "Bearer", "expires_in": self.token_lifetime,
                             "ext_expires_in": self.token_lifetime,
                             "access_token": token}), {}, shown

    def _query(self, body: dict, skiptoken: str | None) -> str:
        kind = body.get("type")
        if kind not in KINDS or body.get("timeframe") != "Custom":
            raise ValueError("Only ActualCost/AmortizedCost with a Custom timeframe here.")
        dataset = body.get("dataset") or {}
        if (dataset.get("granularity") != "Daily"
                or dataset.get("aggregation") != {"totalCost": {"name": "Cost",
                                                                "function": "Sum"}}
                or dataset.get("grouping") != [{"type": "Dimension", "name": "ServiceName"},
                                               {"type": "Dimension", "name": "ChargeType"}]):
            raise ValueError("Invalid dataset.")
        period = body.get("timePeriod") or {}
        low, high = (date.fromisoformat(period[k][:10]) for k in ("from", "to"))
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        offset = 0
        if skiptoken:
            state = json.loads(base64.urlsafe_b64decode(skiptoken + "=" * (-len(skiptoken) % 4)))
            if state["q"] != digest:
                raise ValueError("The nextLink must be POSTed with the body of its query.")
            offset = state["o"]
        keys = sorted(k for k in self.truth[kind] if low <= k[0] <= high)
        page = keys[offset:offset + self.page_size]
        columns = _COLUMNS[kind]
        rows = []
        for key in page:
            day, service, charge, currency = key
            values = {"Cost": self.truth[kind][key], "ServiceName": service,
                      "ChargeType": charge, "Currency": currency,
                      "CostUSD": self.truth[kind][key] if currency == "USD" else Decimal(0),
                      "UsageDate": (int(day.strftime("%Y%m%d")) if kind == "ActualCost"
                                    else f"{day.isoformat()}T00:00:00")}
            rows.append([values[name] for name, _ in columns])
        following = None
        if offset + self.page_size < len(keys):
            token = base64.urlsafe_b64encode(json.dumps(
                {"q": digest, "o": offset + self.page_size}).encode()).decode().rstrip("=")
            following = (f"{self.url}{self.scope}/providers/Microsoft.CostManagement/query?"
                         f"api-version={API_VERSION}&$skiptoken={token}")
        return to_json({
            "id": f"{self.scope.lstrip('/')}/providers/Microsoft.CostManagement/query/"
                  f"{uuid.uuid4()}",
            "name": str(uuid.uuid4()), "type": "Microsoft.CostManagement/query",
            "location": None, "sku": None, "eTag": None,
            "properties": {"nextLink": following,
                           "columns": [{"name": n, "type": t} for n, t in columns],
                           "rows": rows},
        })


def _arm_error(code: str, message: str) -> str:
    return to_json({"error": {"code": code, "message": message}})


def _aad_error(error: str, code: int, text: str) -> str:
    return to_json({"error": error,
                    "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\n"
                                         f"Correlation ID: {uuid.uuid4()}",
                    "error_codes": [code], "timestamp": "2026-03-15 10:00:00Z",
                    "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.fake._handle(self, "GET")  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake._handle(self, "POST")  # type: ignore[attr-defined]

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.fake._handle(self, "HEAD")  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass
