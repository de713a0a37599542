"""A provider-neutral JSON-over-HTTPS client: paced, retrying inside one request, Decimal-exact,
secret-free. GET and POST; each provider brings its paging as a `NextPage` callable and, where
it needs them, a `TokenSource` (tokens that expire) and an `ErrorHook` (its own reading of a
failed answer).

Errors come out as errors.* kinds so the task layer can decide about retries.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import httpx

from optiinfra_tui import __version__
from optiinfra_tui.collectors.fields import decode_json
from optiinfra_tui.collectors.ratelimit import RateLimiter
from optiinfra_tui.errors import (
    RETRYABLE,
    AuthError,
    ConfigError,
    DataError,
    OptiInfraError,
    TransientError,
    backoff,
)
from optiinfra_tui.text import safe_url, scrub

log = logging.getLogger("optiinfra.collectors")

_RETRY_STATUSES = {408, 425, 429}


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page's request: a path under the base URL or an absolute URL on the same host."""

    url: str
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None  # a JSON body makes it a POST (Azure's query API pages that way)

    def key(self) -> tuple[str, str, str]:
        """What makes two requests the same page: a server that asks for it again loops."""
        return (self.url, repr(sorted(self.params.items())), repr(self.body))


# A bearer token that expires: the current one, or a fresh one when asked (force=True, after a
# 401). It raises AuthError for a refused credential, TransientError for an unreachable issuer.
TokenSource = Callable[[bool], str]

# The provider's reading of a failed answer (HTTP 400 and up), before the generic one: an error
# to raise at once, a TransientError to retry within the request (BigQuery throttles with 403
# `rateLimitExceeded`), or None for the generic handling. Gets the response and the request's
# name for messages.
ErrorHook = Callable[[httpx.Response, str], "OptiInfraError | None"]

# The provider's paging: the request for the page after `body` (the answer to `request`), or
# None when `body` was the last page. Raises DataError for a next-page field it can't use.
NextPage = Callable[[dict, PageRequest], "PageRequest | None"]


def next_link(*keys: str) -> NextPage:
    """Paging by an absolute next-page URL found at body[keys[0]][keys[1]]..., re-sending
    the same body (Azure: `properties.nextLink`, POSTed again with the query)."""
    where = ".".join(keys)

    def next_page(body: dict, request: PageRequest) -> PageRequest | None:
        value: Any = body
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise DataError(f"{where} is a {type(value).__name__}, expected a URL")
        return PageRequest(value, {}, request.body)

    return next_page


def _release(resp: httpx.Response) -> None:
    """Let a read response go as soon as it is dropped.

    httpx binds a response and its stream to each other: without this, each body (a page of
    invoice items is ~100 KB) lives on until a garbage collection pass finds the cycle.
    """
    resp.stream = httpx.ByteStream(b"")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds, fractional allowed, or HTTP-date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(seconds, 0.0)


def certificate_refused(exc: BaseException) -> str | None:
    """Why the server's TLS certificate was not trusted, when that is what made `exc` (httpx
    wraps ssl.SSLCertVerificationError in its ConnectError); None for any other failure."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause.verify_message or "certificate verify failed"
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def tls_trust(env: Mapping[str, str]) -> ssl.SSLContext:
    """What `verify` takes for the CA bundle in SSL_CERT_FILE (else SSL_CERT_DIR), httpx's own
    rule but read from the settings' environment; else httpx's default trust (which reads
    the process's environment)."""
    cafile = env.get("SSL_CERT_FILE", "").strip()
    capath = "" if cafile else env.get("SSL_CERT_DIR", "").strip()
    if cafile or capath:
        return _trust(cafile, capath, _version(cafile or capath), False)
    cafile, capath = os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", "")
    return _trust(cafile, capath, _version(cafile or capath), True)


def _version(path: str) -> tuple:
    """What tells a bundle rewritten in place from the one a context was made of."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return ()
    return () if st is None else (st.st_ino, st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=8)
def _trust(cafile: str, capath: str, version: tuple, default: bool) -> ssl.SSLContext:
    # One context per bundle for the process (contexts are shared safely between threads):
    # building one reads the whole bundle, ~10 ms of CPU that every collector (and every
    # httpx client given `True`) paid again.
    if default:
        return httpx.create_ssl_context(trust_env=True)
    return ssl.create_default_context(cafile=cafile or None, capath=capath or None)


def untrusted_certificate(where: str, host: str, reason: str, url_env: str | None) -> ConfigError:
    """The error for a certificate this process doesn't trust: no retry changes that; the CA
    bundle does (SSL_CERT_FILE, see tls_trust), or the URL in `url_env` when it is set."""
    via = (f"If {url_env} points at a proxy or a test double" if url_env
           else "If a TLS-inspecting proxy stands in between")
    return ConfigError(f"{where}: the TLS certificate of {host} is not trusted ({reason}). {via}, "
                       "set SSL_CERT_FILE to the CA bundle that signs its certificate.")


def _host_port(url: str) -> str:
    """host:port of a URL, with the scheme's default port when it names none."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.hostname or ''}:{port}" if port else (parts.hostname or "")


def _origin(url: str) -> tuple[str, str]:
    return urlsplit(url).scheme.lower(), _host_port(url)


@lru_cache(maxsize=64)
def env_proxy(url: str) -> str | None:
    """The proxy the process's environment names for `url` (HTTPS_PROXY, HTTP_PROXY,
    ALL_PROXY, less NO_PROXY, either case), as httpx's trust_env would pick it; None: none."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass_environment(parts.netloc):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme.lower()) or proxies.get("all")


def _is_absolute(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


class ApiClient:
    """JSON objects from one API with one bearer token: GET, POST, and paged listings."""

    def __init__(
        self,
        base_url: str,
        token: str | TokenSource,
        rate_limiter: RateLimiter | None,
        timeout: float = 30,
        max_inner_retries: int = 4,
        *,
        service: str = "the API",
        key_env: str | None = None,
        url_env: str | None = None,
        url_hint: str = "",
        default_url: str | None = None,
        retry_after_headers: Sequence[str] = ("Retry-After",),
        max_wait: float = 60.0,
        backoff_base: float = 0.5,
        on_error: ErrorHook | None = None,
        verify: Any = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`rate_limiter` is shared by every client of one key (the provider picks the key; None:
        no pacing); `retry_after_headers` are header names, `*` allowed, read on 429/5xx and
        on what `on_error` calls transient (largest wins). An empty token sends none.
        `headers` go with every request (an API version, say)."""
        self._limiter = rate_limiter
        self._max_retries = max(0, max_inner_retries)
        self._max_wait = max_wait
        self._backoff_base = backoff_base
        self._service = service
        self._key_env = key_env
        self._url_env = url_env
        self._url_hint = url_hint
        self._retry_headers = tuple(h.lower() for h in retry_after_headers)
        self._base = safe_url(base_url.rstrip("/"))
        self._origin = _origin(base_url)
        self._host = _host_port(base_url)
        self._default_url = default_url.rstrip("/") if default_url else None
        self._url_is_default = self._default_url == base_url.rstrip("/")
        self._token = token if callable(token) else None
        self._secret = "" if callable(token) else token  # only to scrub it from others' text
        self._on_error = on_error
        self._seen_success = False
        self.requests = 0  # sent, retries included
        headers = {"Accept": "application/json", "User-Agent": f"optiinfra-tui/{__version__}",
                   **(headers or {})}
        if token and not callable(token):
            headers["Authorization"] = f"Bearer {token}"
        # The environment's proxy for this API, read once per process (trust_env: httpx would
        # read every environment variable for each client: ~10 ms with 10,000 customers' keys).
        self._client = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers,
                                    timeout=timeout, trust_env=False, proxy=env_proxy(base_url),
                                    verify=tls_trust({}) if verify is True else verify)

    def __repr__(self) -> str:
        return f"ApiClient({self._base!r})"

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> dict:
        """One GET answered by a JSON object; 429/5xx/network failures are retried here first."""
        return self.request_json("GET", url, params)

    def post_json(self, url: str, body: Any, params: Mapping[str, Any] | None = None) -> dict:
        """One POST of a JSON query answered by a JSON object, retried as a GET is: for read-only
        query APIs (Azure's), never for requests that change anything."""
        return self.request_json("POST", url, params, body)

    def get_bytes(self, url: str, params: Mapping[str, Any] | None = None) -> bytes:
        """One GET answered by any body (XML, a file), returned whole; retried and checked as
        `get_json` is."""
        return self._request("GET", url, params, None, self._body)

    def request_json(self, method: str, url: str, params: Mapping[str, Any] | None = None,
                     body: Any = None) -> dict:
        """`url` is a path under the base URL, or an absolute URL on the base URL's host."""
        return self._request(method, url, params, body, self._decode)

    def _request(self, method: str, url: str, params: Mapping[str, Any] | None, body: Any,
                 decode: Callable[[httpx.Response, str], Any]) -> Any:
        if _is_absolute(url):
            if _origin(url) != self._origin:
                # The token goes with every request: never to a host the user didn't name.
                raise DataError(f"{self._service} answered with a link to {safe_url(url)}, "
                                f"outside {self._base}; not following it with the credential.")
            target = url
        else:
            target = url.lstrip("/")
        where = f"{self._service} {method} {_shown(url)}"
        # httpx replaces a URL's own query (a next link's) with `params`: merge them here.
        query = httpx.URL(target).copy_merge_params(params) if params else target
        attempt, refreshed, fresh = 0, False, False
        while True:
            if self._limiter is not None:
                self._limiter.acquire()
            retry_after: float | None = None
            status: int | None = None
            unreachable: httpx.TransportError | None = None
            headers, fresh = self._auth(force=fresh), False
            self.requests += 1
            try:
                resp = self._client.request(method, query, json=body, headers=headers)
            except httpx.TransportError as exc:
                refused = certificate_refused(exc)
                if refused is not None:
                    raise untrusted_certificate(where, self._host, refused, None if (
                        self._url_is_default) else self._url_env) from None
                problem = f"{type(exc).__name__}: {self.scrub(str(exc)) or 'no detail'}"
                unreachable = exc
            except httpx.RequestError as exc:  # e.g. a body that won't decompress
                raise DataError(f"{where}: {type(exc).__name__}: "
                                f"{self.scrub(str(exc))}") from None
            else:
                status = resp.status_code
                try:
                    if status == 401 and self._token is not None and not refreshed:
                        # A token revoked before its time: one fresh one, then it's the key.
                        refreshed = fresh = True
                        continue
                    verdict = self._on_error(resp, where) if (
                        self._on_error is not None and status >= 400) else None
                    if verdict is not None:
                        # The provider's text may quote the server's: never with the token.
                        verdict.args = (self.scrub(str(verdict.args[0])), *verdict.args[1:])
                        if not isinstance(verdict, RETRYABLE):
                            raise verdict
                    if verdict is None and status < 500 and status not in _RETRY_STATUSES:
                        return decode(resp, where)
                    retry_after = self._retry_after(resp.headers)
                    problem = (verdict.args[0] if verdict is not None
                               else f"HTTP {status}{self._error_text(resp)}")
                finally:
                    _release(resp)
            if retry_after is not None and retry_after > self._max_wait:
                # Worth a later task retry, not a blocked worker thread.
                raise TransientError(
                    f"{where} failed ({problem}); the server asks to wait {retry_after:g} s",
                    retry_after,
                )
            if attempt >= self._max_retries:
                # The request's own tries are not counted here: the run counts its attempts,
                # and two counts in one message read as a contradiction.
                if unreachable is not None:
                    raise TransientError(self._unreachable(where, unreachable, problem),
                                         retry_after)
                raise TransientError(f"{where} failed: {problem}.", retry_after)
            wait = retry_after if retry_after is not None else backoff(attempt, self._backoff_base, self._max_wait)
            log.warning("%s: %s; retrying in %.2f s (request %d of %d)",
                        where, problem, wait, attempt + 2, self._max_retries + 1)
            if status == 429 and self._limiter is not None:
                self._limiter.defer(wait)  # the limit is per key: every thread waits
            else:
                time.sleep(wait)
            attempt += 1

    def pages(self, first: PageRequest, next_page: NextPage,
              max_pages: int = 10000) -> Iterator[dict]:
        """Yield each page's JSON object, from `first` on, as `next_page` leads.

        A page requested twice, or the page cap, ends the walk with a warning: never a loop.
        """
        request = first
        seen = {request.key()}
        pages = 0
        while True:
            method = "GET" if request.body is None else "POST"
            body = self.request_json(method, request.url, request.params, request.body)
            yield body
            pages += 1
            following = next_page(body, request)
            if following is None:
                return
            if following.key() in seen:
                log.warning("%s %s %s: the server repeated a page cursor after %d pages; "
                            "stopping this listing here", self._service, method,
                            _shown(first.url), pages)
                return
            if pages >= max_pages:
                log.warning("%s %s %s: stopped at the %d-page cap; the listing may be "
                            "incomplete", self._service, method, _shown(first.url), max_pages)
                return
            seen.add(following.key())
            request = following

    # --- helpers ---------------------------------------------------------------------------

    def _auth(self, force: bool) -> dict[str, str]:
        """The Authorization header of a token source's current (or fresh) token."""
        if self._token is None:
            return {}
        token = self._token(force)
        self._secret = token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _retry_after(self, headers: httpx.Headers) -> float | None:
        """The longest wait any of the provider's retry-after headers asks for."""
        waits = []
        for pattern in self._retry_headers:
            names = fnmatch.filter(headers.keys(), pattern) if "*" in pattern else (pattern,)
            for name in names:
                wait = parse_retry_after(headers.get(name))
                if wait is not None:
                    waits.append(wait)
        return max(waits, default=None)

    def _unreachable(self, where: str, exc: httpx.TransportError, problem: str) -> str:
        """What failed, at which host:port, where that address comes from, and what to do."""
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            what = f"can't connect to {self._host}"
        elif isinstance(exc, httpx.TimeoutException):
            what = f"{self._host} did not answer in time"
        else:
            what = f"the connection to {self._host} failed"
        if self._url_is_default or not self._url_env:
            source = f"the default {self._service} API host"
            if self._url_env:
                source += f" ({self._url_env} is not set)"
            fix = ("Check this machine's network access to it (DNS, firewall, or a proxy "
                   "in HTTPS_PROXY).")
        else:
            source = f"from {self._url_env}={self._base}"
            fix = f"Check that {self._url_env} points at a running {self._service} API"
            fix += f", or unset it to use {self._default_url}." if self._default_url else "."
        return f"{where}: {what}, {source} ({problem}). {fix}"

    def scrub(self, text: str) -> str:
        """`text` without the token (the current one, for a token source)."""
        return scrub(text, (self._secret,))

    def _error_text(self, resp: httpx.Response) -> str:
        """The server's own error message, if it sent one, short and scrubbed."""
        return self.scrub(server_message(resp))

    def _decode(self, resp: httpx.Response, where: str) -> dict:
        """A successful answer's JSON object; an error for any other answer."""
        self._check(resp, where)
        status = resp.status_code
        try:
            body = decode_json(resp.content)
        except DataError as exc:
            raise DataError(f"{where}: {exc}") from None
        except (ValueError, RecursionError):
            raise DataError(f"{where}: the response (HTTP {status}) is not JSON.") from None
        if not isinstance(body, dict):
            raise DataError(f"{where}: expected a JSON object, got a {type(body).__name__}.")
        self._seen_success = True
        return body

    def _body(self, resp: httpx.Response, where: str) -> bytes:
        """A successful answer's body as it came; an error for any other answer."""
        self._check(resp, where)
        self._seen_success = True
        return resp.content

    def _check(self, resp: httpx.Response, where: str) -> None:
        """The error for an answer that isn't a success (below 300), naming what to fix."""
        status = resp.status_code
        if status in (401, 403):
            fix = f"check {self._key_env}" if self._key_env else "check the API key"
            fix += " (is it current, and allowed to read billing from this host?)"
            raise AuthError(f"{where} was refused (HTTP {status}{self._error_text(resp)}): {fix}")
        if status == 404 and not self._seen_success:
            # Nothing has worked yet with this base URL: the URL is the likelier culprit.
            setting = self._url_env or "the base URL"
            hint = f" ({self._url_hint})" if self._url_hint else ""  # e.g. "it ends in /v2"
            raise ConfigError(
                f"{where} answered 404 Not Found at {self._base}: check {setting}{hint}."
            )
        if status == 407:
            setting = self._url_env or "the base URL"
            raise ConfigError(f"{where}: the proxy in {setting} wants credentials (HTTP 407).")
        if 300 <= status < 400:
            setting = self._url_env or "the base URL"
            raise ConfigError(f"{where} redirected (HTTP {status}): set {setting} to the "
                              "final API address.")
        if status >= 400:
            raise DataError(f"{where} was rejected (HTTP {status}{self._error_text(resp)}).")


def server_message(resp: httpx.Response) -> str:
    """' (the server's own error message)', short, if its answer has one; else ''."""
    try:
        body = decode_json(resp.content)
    except (ValueError, RecursionError, DataError):
        return ""
    message = body.get("error") if isinstance(body, dict) else None
    if isinstance(message, dict):  # {"error": {"code": ..., "message": ...}} (Azure)
        message = message.get("message")
    if not isinstance(message, str) or not message.strip():
        return ""
    return f" ({message.strip()[:200]})"


def _shown(url: str) -> str:
    return safe_url(url) if _is_absolute(url) else "/" + url.lstrip("/")
