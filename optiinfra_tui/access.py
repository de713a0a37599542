"""Who may use a listener: the API tokens, compared in constant time, and the loopback rule.

The HTTP API, the browser dashboard and the Prometheus listener all decide here. Tokens live
in the environment only (OPTIINFRA_API_TOKEN, and the variables `[api] tokens_env` names); a
token is known by the name of its variable, never by its value, in logs and rate limits.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import API_TOKEN_VAR, Settings

MIN_TOKEN_LENGTH = 16
MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


@dataclass(frozen=True)
class Tokens:
    """The tokens this process accepts, each under the name of the variable holding it."""

    by_var: tuple[tuple[str, bytes], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.by_var)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(var for var, _ in self.by_var)

    def match(self, presented: str | None) -> str | None:
        """The variable whose token `presented` is, else None. Every token is compared, each
        in constant time, so the answer's timing tells nothing about any of them."""
        if not presented:
            return None
        given = presented.encode("utf-8", "replace")
        found = None
        for var, token in self.by_var:
            if hmac.compare_digest(given, token) and found is None:
                found = var
        return found


def tokens(settings: Settings) -> Tokens:
    """The tokens set in this process's environment; ConfigError for a token shorter than
    MIN_TOKEN_LENGTH, or a variable `[api] tokens_env` names that is not set."""
    found = []
    for var in settings.api.token_vars:
        value = settings.env.get(var, "").strip()
        if not value:
            if var != API_TOKEN_VAR:  # named on purpose: unset is a mistake, not a choice
                raise ConfigError(f"[api] tokens_env names {var}, which is not set. Export "
                                  f"{var}=<a token> where this runs, or take it out of "
                                  "tokens_env.")
            continue
        if len(value) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"{var} is {len(value)} characters long: a token needs at least "
                              f"{MIN_TOKEN_LENGTH}. Make one with `{MAKE_TOKEN}`.")
        found.append((var, value.encode()))
    return Tokens(tuple(found))


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is this host alone (127.0.0.0/8, ::1, localhost)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name, or "": it may well be reachable from elsewhere
        return False


def check_listener(host: str, option: str, found: Tokens, what: str) -> None:
    """No listener beyond loopback without a token: ConfigError naming both ways out."""
    if not found and not is_loopback(host):
        raise ConfigError(
            f"{option} {host}: {what} would be reachable from other hosts, and no token is set. "
            f"Export {API_TOKEN_VAR}=<a token> (make one with `{MAKE_TOKEN}`), or listen on "
            "127.0.0.1 (the default).")


def require_tokens(found: Tokens, what: str) -> None:
    """`what` never runs without a token, on loopback too: ConfigError saying how to set one."""
    if not found:
        raise ConfigError(f"{what} needs a token: export {API_TOKEN_VAR}=<a token> (make one "
                          f"with `{MAKE_TOKEN}`); callers send it as `Authorization: Bearer "
                          "<token>`.")
