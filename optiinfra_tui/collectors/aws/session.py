"""botocore for one customer: credentials, clients with our endpoints and retries, errors as
the product's kinds, and a meter of the requests sent.

Secrets (keys, session tokens) live in botocore's credential objects only: every message that
leaves this module passes through `_scrub`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from optiinfra_tui.collectors.aws import INSTALL_HINT, AwsAccount, RequestBudgetExceeded
from optiinfra_tui.errors import AuthError, ConfigError, DataError, TransientError
from optiinfra_tui.text import scrub

try:
    import botocore.session
    from botocore.config import Config
    from botocore.credentials import Credentials
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
except ImportError:  # the aws extra is missing: said when AWS collects (require_botocore)
    botocore = None

log = logging.getLogger("optiinfra.aws")

# Services by the suffix of botocore's endpoint variables (AWS_ENDPOINT_URL_<suffix>).
ENDPOINT_SUFFIX = {"ce": "COST_EXPLORER", "s3": "S3", "sts": "STS"}
# Retried by botocore first (standard mode: exponential back-off with jitter), then by ours.
THROTTLED = frozenset({"ThrottlingException", "Throttling", "LimitExceededException",
                       "RequestLimitExceeded", "TooManyRequestsException", "SlowDown",
                       "ServiceUnavailable", "ServiceUnavailableException",
                       "InternalServerError", "InternalFailure", "InternalError"})
REFUSED = frozenset({"UnrecognizedClientException", "UnrecognizedClient",
                     "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
                     "InvalidAccessKeyId", "SignatureDoesNotMatch", "AuthFailure",
                     "InvalidToken", "TokenRefreshRequired"})
BOTOCORE_ATTEMPTS = 3  # per request, inside one attempt of the run


def require_botocore() -> None:
    """ConfigError naming the install command when the aws extra is missing."""
    if botocore is None:
        raise ConfigError(f"Collecting from AWS needs botocore, which is not installed. "
                          f"Install the AWS extra: {INSTALL_HINT}")


def endpoint_url(env: Mapping[str, str], service: str) -> str | None:
    """botocore's rule, read from our settings' environment: the service's variable, then
    AWS_ENDPOINT_URL; none when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true."""
    if env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").strip().lower() == "true":
        return None
    return (env.get(f"AWS_ENDPOINT_URL_{ENDPOINT_SUFFIX[service]}", "").strip()
            or env.get("AWS_ENDPOINT_URL", "").strip() or None)


def region(env: Mapping[str, str]) -> str:
    return (env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
            or "us-east-1")


@dataclass
class RequestMeter:
    """Counts the HTTP requests a client sends (botocore's retries included); past `budget`
    billed requests, the next one is refused before it is sent."""

    budget: int | None = None
    count: int = 0
    billed: int = 0
    what: str = "AWS"
    budget_var: str = ""

    def hook(self, billed: bool) -> Callable[..., None]:
        def before_send(**_kwargs) -> None:
            if billed and self.budget is not None and self.billed >= self.budget:
                raise RequestBudgetExceeded(
                    f"{self.what} bills $0.01 per request and this run reached its budget of "
                    f"{self.budget} requests ({self.budget_var}) before the answer was "
                    f"complete: it stopped, and keeps the pages it read. Raise "
                    f"{self.budget_var}, or collect less often.")
            self.count += 1
            self.billed += billed
        return before_send


class AwsSession:
    """One customer's botocore session: resolved credentials and the clients made from them."""

    def __init__(self, env: Mapping[str, str], account: AwsAccount, customer_id: str,
                 meter: RequestMeter) -> None:
        require_botocore()
        self.env, self.account, self.customer_id, self.meter = env, account, customer_id, meter
        self._session = botocore.session.Session()
        profile = env.get("AWS_PROFILE", "").strip()
        if profile and not account.access_key_id_env:
            self._session.set_config_variable("profile", profile)
        self._secrets: tuple[str, ...] = ()
        self.credentials = self._resolve()

    # --- credentials --------------------------------------------------------------------------

    def _resolve(self) -> Credentials:
        base = resolve_credentials(self.env, self._session, self.customer_id,
                                   self.account.access_key_id_env,
                                   self.account.secret_access_key_env)
        self._remember(base)
        if self.account.role_arn:
            sts = self._client("sts", base)
            try:
                answer = sts.assume_role(RoleArn=self.account.role_arn,
                                         RoleSessionName="optiinfra-tui")["Credentials"]
            except Exception as exc:
                raise self.translate(exc, "STS AssumeRole", "sts:AssumeRole on "
                                     f"{self.account.role_arn}") from None
            finally:
                sts.close()
            base = Credentials(answer["AccessKeyId"], answer["SecretAccessKey"],
                               answer["SessionToken"])
            self._remember(base)
        return base

    def _remember(self, creds: Credentials) -> None:
        frozen = creds.get_frozen_credentials()
        self._secrets += tuple(s for s in (frozen.access_key, frozen.secret_key, frozen.token)
                               if s)

    def frozen(self) -> tuple[str, str, str]:
        """(access key id, secret, session token or ''): for ClickHouse's reads of S3 files."""
        f = self.credentials.get_frozen_credentials()
        return f.access_key, f.secret_key, f.token or ""

    # --- clients ------------------------------------------------------------------------------

    def client(self, service: str, billed: bool = False):
        """A client whose every request the meter counts (and, if billed, budgets)."""
        return self._client(service, self.credentials, billed)

    def _client(self, service: str, creds: Credentials, billed: bool = False):
        endpoint = endpoint_url(self.env, service)
        frozen = creds.get_frozen_credentials()
        config = Config(retries={"mode": "standard", "max_attempts": BOTOCORE_ATTEMPTS},
                        connect_timeout=10, read_timeout=120,
                        s3={"addressing_style": "path"} if endpoint and service == "s3" else None)
        client = self._session.create_client(
            service, region_name="us-east-1" if service == "ce" else region(self.env),
            endpoint_url=endpoint, aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key, aws_session_token=frozen.token,
            config=config)
        service_id = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-send.{service_id}", self.meter.hook(billed))
        return client

    # --- errors -------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def translate(self, exc: BaseException, what: str, permission: str) -> Exception:
        """The product's error for a botocore error; `permission` is the IAM action to check."""
        if isinstance(exc, (RequestBudgetExceeded, ConfigError, AuthError, TransientError,
                            DataError)):
            return exc
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or "Unknown"
            message = self.scrub(str(error.get("Message", "")))[:300]
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            said = f"{what}: {code}" + (f" ({message})" if message else "")
            if code in THROTTLED or status == 429 or status >= 500:
                return TransientError(f"{said}: AWS is throttling or unavailable; retrying.")
            if code.startswith("AccessDenied") or code == "UnauthorizedOperation":
                return AuthError(f"{said}. The credentials from {self.account.key_vars} lack "
                                 f"the IAM permission {permission}: grant it to that user or "
                                 "role (see the README's IAM policy).")
            if code in REFUSED:
                return AuthError(f"{said}. AWS refused the credentials from "
                                 f"{self.account.key_vars} for customer {self.customer_id!r}: "
                                 "check that the key is active and current (an expired session "
                                 "token needs renewing).")
            return DataError(f"{said}. AWS refused the request.")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigError(f"No AWS credentials for customer {self.customer_id!r}: set "
                               f"{self.account.key_vars}.")
        if isinstance(exc, (ConnectionError, HTTPClientError)):
            endpoint = ENDPOINT_SUFFIX.get(what.split()[0].lower(), "")
            hint = f" (AWS_ENDPOINT_URL_{endpoint} or AWS_ENDPOINT_URL)" if endpoint else ""
            return TransientError(f"{what}: AWS is unreachable ({type(exc).__name__}). Check "
                                  f"the network and any endpoint override{hint}.")
        if isinstance(exc, BotoCoreError):
            return DataError(f"{what}: {self.scrub(str(exc))[:300]}")
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def resolve_credentials(env: Mapping[str, str], session, customer_id: str,
                        access_key_id_env: str | None = None,
                        secret_access_key_env: str | None = None) -> Credentials:
    """The customer's credentials: from the two named variables of `env` when given, else
    the standard variables of `env`, else botocore's default chain (profile, instance role).

    ConfigError names the variable to set; no value is ever in a message.
    """
    require_botocore()
    if access_key_id_env or secret_access_key_env:
        key = env.get(access_key_id_env or "", "").strip()
        secret = env.get(secret_access_key_env or "", "").strip()
        missing = [n for n, v in ((access_key_id_env, key), (secret_access_key_env, secret))
                   if not v]
        if missing:
            raise ConfigError(f"{' and '.join(str(m) for m in missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not set: the AWS keys of "
                              f"customer {customer_id!r} are missing. Export them where the "
                              "workers run.")
        return Credentials(key, secret)
    key = env.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = env.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if key and secret:
        return Credentials(key, secret, env.get("AWS_SESSION_TOKEN", "").strip() or None)
    try:
        found = session.get_credentials()
    except Exception as exc:  # a broken profile file, an unreachable instance role
        raise ConfigError(f"botocore could not find AWS credentials for customer "
                          f"{customer_id!r} ({type(exc).__name__}). Set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE.") from None
    if found is None:
        raise ConfigError(f"No AWS credentials for customer {customer_id!r}: set "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run "
                          "where an instance role is attached.")
    return found
