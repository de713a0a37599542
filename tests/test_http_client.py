"""The provider-neutral HTTP client against a real local server shaped like Azure's query API:
POST paging by absolute next links, provider-specific retry-after headers, 429 storms."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fake_azure import make_certificate
from fake_vultr import to_json
from local_server import wrap_tls

from optiinfra_tui.collectors.http import ApiClient, PageRequest, next_link
from optiinfra_tui.collectors.ratelimit import RateLimiter
from optiinfra_tui.errors import ConfigError, DataError, TransientError

QUERY = "/subscriptions/sub-1/providers/Microsoft.CostManagement/query"
AZURE_RETRY = "x-ms-ratelimit-microsoft.costmanagement-*-retry-after"


@dataclass
class Seen:
    t: float
    method: str
    path: str
    query: dict[str, str]
    body: object
    auth: str


@dataclass
class QueryServer:
    """Serves `pages` pages of a cost query, each POST answered with rows and an absolute
    `properties.nextLink`; `faults` are (status, headers) answered first, one per request."""

    pages: int = 3
    token: str = field(default_factory=lambda: "azure-" + secrets.token_hex(8))
    faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    storm: tuple[int, dict[str, str]] | None = None  # answered to every request when set
    next_host: str | None = None  # a foreign host to put in the next link
    cert: tuple[Path, Path] | None = None  # certificate and key: served over TLS
    seen: list[Seen] = field(default_factory=list)

    def __enter__(self) -> QueryServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        if self.cert:
            wrap_tls(self._server, self.cert)
        self._server.daemon_threads = True
        self._server.api = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def root(self) -> str:
        scheme = "https" if self.cert else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def client(self, **kwargs) -> ApiClient:
        kwargs.setdefault("backoff_base", 0.01)
        return ApiClient(self.root, self.token, RateLimiter(1000), timeout=10, service="Azure",
                         **kwargs)

    def answer(self, page: int) -> dict:
        rows = [[Decimal(f"{page}.10"), f"service-{page}-{i}"] for i in range(2)]
        host = self.next_host or self.root
        link = (f"{host}{QUERY}?api-version=2023-03-01&$skiptoken=page{page + 1}"
                if page + 1 < self.pages else None)
        return {"properties": {"columns": [{"name": "Cost"}, {"name": "ServiceName"}],
                               "rows": rows, "nextLink": link}}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self._serve(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def do_GET(self) -> None:
        self._serve(None)

    def _serve(self, body: object) -> None:
        api: QueryServer = self.server.api  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        api.seen.append(Seen(time.monotonic(), self.command, parts.path, query, body,
                             self.headers.get("Authorization", "")))
        if api.storm or api.faults:
            status, headers = api.storm or api.faults.pop(0)
            self._send(status, {"error": {"code": "429", "message": "Too many requests"}},
                       headers)
        elif self.headers.get("Authorization") != f"Bearer {api.token}":
            self._send(401, {"error": {"code": "AuthenticationFailed", "message": "bad token"}})
        else:
            page = int(query.get("$skiptoken", "page0").removeprefix("page"))
            self._send(200, api.answer(page))

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = to_json(body).encode()  # a Decimal as the number it spells
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api():
    with QueryServer() as server:
        yield server


def test_post_paging_follows_absolute_next_links_with_the_same_body(api):
    query = {"type": "ActualCost", "timeframe": "MonthToDate",
             "dataset": {"granularity": "Daily", "aggregation": {
                 "totalCost": {"name": "Cost", "function": "Sum"}}}}
    first = PageRequest(QUERY, {"api-version": "2023-03-01"}, query)
    with api.client() as client:
        pages = list(client.pages(first, next_link("properties", "nextLink")))
    assert [[row[1] for row in p["properties"]["rows"]] for p in pages] == [
        [f"service-{n}-0", f"service-{n}-1"] for n in range(3)]
    assert pages[2]["properties"]["rows"][0][0] == Decimal("2.10")  # exact, never a float
    assert [s.method for s in api.seen] == ["POST"] * 3
    assert [s.body for s in api.seen] == [query] * 3
    assert [s.query.get("$skiptoken") for s in api.seen] == [None, "page1", "page2"]
    assert all(s.path == QUERY and s.query["api-version"] == "2023-03-01" for s in api.seen)
    assert all(s.auth == f"Bearer {api.token}" for s in api.seen)


def test_a_next_link_to_another_host_is_refused_before_the_token_goes_there(api):
    api.next_host = "http://127.0.0.2:9"
    first = PageRequest(QUERY, {"api-version": "2023-03-01"}, {"type": "ActualCost"})
    with api.client() as client, pytest.raises(DataError, match="127.0.0.2") as info:
        list(client.pages(first, next_link("properties", "nextLink")))
    assert "credential" in str(info.value)
    assert len(api.seen) == 1


def test_a_repeated_next_link_ends_the_walk(api, caplog):
    caplog.set_level(logging.WARNING, logger="optiinfra.collectors")
    first = PageRequest(QUERY, {"api-version": "2023-03-01"}, {"type": "ActualCost"})
    again = PageRequest(f"{api.root}{QUERY}?api-version=2023-03-01&$skiptoken=page1", {},
                        first.body)
    with api.client() as client:
        pages = list(client.pages(first, lambda body, request: again))
    assert len(pages) == 2 and len(api.seen) == 2
    assert any("repeated a page" in r.getMessage() for r in caplog.records)


def test_the_providers_own_retry_after_header_is_honoured(api):
    # No Retry-After: only Azure's own header says how long to wait.
    api.faults = [(429, {"x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "1"})]
    with api.client(retry_after_headers=("Retry-After", AZURE_RETRY)) as client:
        body = client.post_json(QUERY, {"type": "ActualCost"}, {"api-version": "2023-03-01"})
    assert body["properties"]["rows"]
    assert len(api.seen) == 2
    assert api.seen[1].t - api.seen[0].t >= 0.9  # the header's second, not a 10 ms back-off


def test_a_long_wait_in_the_providers_header_is_left_to_the_task(api):
    api.faults = [(429, {"x-ms-ratelimit-microsoft.costmanagement-entity-retry-after": "30",
                         "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after": "120",
                         "Retry-After": "5"})]
    with api.client(retry_after_headers=("Retry-After", AZURE_RETRY)) as client:
        with pytest.raises(TransientError, match="wait 120 s") as info:
            client.post_json(QUERY, {"type": "ActualCost"})
    assert info.value.retry_after == 120  # the longest of the three
    assert len(api.seen) == 1
    # A client that knows only Retry-After waits 5 s inside the request instead.
    api.faults = [(429, {"x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after": "120"})]
    with api.client(max_inner_retries=0) as client:
        with pytest.raises(TransientError) as info:
            client.post_json(QUERY, {"type": "ActualCost"})
    assert info.value.retry_after is None


def test_a_429_storm_gives_up_with_a_clear_transient_error(api):
    api.storm = (429, {"Retry-After": "0"})
    with api.client(max_inner_retries=3) as client:
        with pytest.raises(TransientError) as info:
            client.post_json(QUERY, {"type": "ActualCost"}, {"api-version": "2023-03-01"})
    assert len(api.seen) == 4  # one request and three retries inside it, then the task decides
    message = str(info.value)
    assert f"Azure POST {QUERY}" in message
    assert "HTTP 429" in message and "Too many requests" in message
    assert api.token not in message and "api-version" not in message
    assert info.value.retry_after == 0


def test_get_with_params_and_a_path_under_the_base(api):
    with api.client() as client:
        body = client.get_json(QUERY, {"api-version": "2023-03-01", "$skiptoken": "page2"})
    assert body["properties"]["nextLink"] is None
    assert api.seen[0].method == "GET" and api.seen[0].body is None


def test_a_token_source_gives_a_fresh_token_once_after_a_401(api):
    asked: list[bool] = []

    def token(force: bool) -> str:
        asked.append(force)
        return api.token if force else "revoked-" + api.token[-4:]

    with ApiClient(api.root, token, None, timeout=10, service="Azure") as client:
        body = client.post_json(QUERY, {"type": "ActualCost"})
        assert body["properties"]["rows"]
        assert client.requests == 2
    assert asked == [False, True]
    assert [s.auth for s in api.seen] == [f"Bearer revoked-{api.token[-4:]}",
                                          f"Bearer {api.token}"]


def test_a_token_source_still_refused_after_one_refresh_is_an_auth_error(api):
    from optiinfra_tui.errors import AuthError

    asked: list[bool] = []

    def token(force: bool) -> str:
        asked.append(force)
        return ""  # none to give: no Authorization header at all

    with ApiClient(api.root, token, None, timeout=10, service="Azure",
                   key_env="AZURE_KEY") as client:
        with pytest.raises(AuthError, match="AZURE_KEY"):
            client.get_json(QUERY)
    assert asked == [False, True] and len(api.seen) == 2
    assert all(s.auth == "" for s in api.seen)


def test_the_providers_error_hook_decides_what_is_transient_and_what_to_say(api):
    # As BigQuery does: a 403 that is throttling (by its reason) and a 403 that is a refusal.
    from optiinfra_tui.errors import AuthError

    def on_error(resp, where):
        if resp.headers.get("x-reason") == "rateLimitExceeded":
            return TransientError(f"HTTP {resp.status_code} rateLimitExceeded")
        if resp.status_code == 403:
            # A provider's text may quote the server's, token included: it never leaves.
            return AuthError(f"{where} was refused with {api.token}: grant the reader role")
        return None

    api.faults = [(403, {"x-reason": "rateLimitExceeded", "Retry-After": "0"}),
                  (403, {"x-reason": "rateLimitExceeded", "Retry-After": "0"})]
    with api.client(on_error=on_error) as client:
        assert client.post_json(QUERY, {"type": "ActualCost"})["properties"]["rows"]
        assert len(api.seen) == 3  # two throttled, retried inside the request
        api.faults = [(403, {})]
        with pytest.raises(AuthError, match="grant the reader role") as info:
            client.post_json(QUERY, {"type": "ActualCost"})
    assert api.token not in str(info.value)
    assert len(api.seen) == 4  # a refusal is not retried
    api.faults = [(403, {"x-reason": "rateLimitExceeded"})] * 3
    with api.client(on_error=on_error, max_inner_retries=2) as client:
        with pytest.raises(TransientError, match="rateLimitExceeded"):
            client.get_json(QUERY)


def test_an_untrusted_certificate_is_a_config_error_at_once_naming_ssl_cert_file(tmp_path,
                                                                                monkeypatch):
    cert = make_certificate(tmp_path)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with QueryServer(cert=cert) as api:
        with api.client(url_env="AZURE_RESOURCE_MANAGER_URL") as client, \
                pytest.raises(ConfigError) as refused:
            client.get_json(QUERY)
        assert client.requests == 1  # no retry inside the request: none makes it trusted
        message = str(refused.value)
        host = f"127.0.0.1:{api.root.rsplit(':', 1)[1]}"
        for part in (host, "not trusted", "self-signed certificate", "SSL_CERT_FILE",
                     "AZURE_RESOURCE_MANAGER_URL"):
            assert part in message
        assert api.token not in message
        assert api.seen == []
        # The fix the message gives works.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))
        with api.client() as client:
            assert client.get_json(QUERY)["properties"]["rows"]


def test_the_environments_proxy_carries_the_requests_and_no_proxy_is_honoured(monkeypatch):
    from optiinfra_tui.collectors.http import env_proxy

    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)  # a forward proxy is asked for the absolute URL
            body = b'{"via": "proxy"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        monkeypatch.setenv("NO_PROXY", "bypassed.example")
        env_proxy.cache_clear()
        with ApiClient("http://api.example:8080/v2", "tok", None, service="Test") as api:
            assert api.get_json("/account") == {"via": "proxy"}
        assert seen == ["http://api.example:8080/v2/account"]
        assert env_proxy("http://bypassed.example/v2") is None
    finally:
        env_proxy.cache_clear()
        proxy.shutdown()
