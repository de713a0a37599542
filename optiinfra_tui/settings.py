"""Settings from the environment and an optional TOML file, validated before anything starts.

Environment variables win over the file. The file holds what variables can't: customers,
their credentials (as names of environment variables, never the secret) and schedules.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse, urlsplit

import platformdirs

from optiinfra_tui import providers
from optiinfra_tui.cron import parse_cron
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.providers import Account

# Every key the TOML file may hold, level by level (`config_schema()`): a dict is a table of
# known keys, ANY_KEY inside it stands for keys the user names (customer ids), a one-element
# list is an array of tables, and None a value checked by its own parser. Each provider's
# [customers.<id>.<provider>] table comes from its spec (optiinfra_tui.providers).
ANY_KEY = "*"
_SCHEDULE_KEYS: dict = dict.fromkeys(("name", "provider", "data_types", "interval", "cron"))
_API_KEYS: dict = dict.fromkeys(("port", "host", "tokens_env", "triggers_per_minute",
                                 "wait_timeout"))
# The API's own token: more go in [api] tokens_env, as names of variables (never the secret).
API_TOKEN_VAR = "OPTIINFRA_API_TOKEN"
_ALERT_KEYS: dict = dict.fromkeys(("name", "url_env", "format", "after_failures"))
ALERT_FORMATS = ("json", "slack")
# Settings that live in the environment: naming one in the file gets its variable as the fix
# (providers' own settings are added from their specs).
_ENV_ONLY_KEYS = {
    "workers": "OPTIINFRA_WORKERS (or --workers)", "keep_days": "OPTIINFRA_KEEP_DAYS",
    "home": "OPTIINFRA_HOME", "redis_url": "REDIS_URL", "database_url": "DATABASE_URL",
    "clickhouse_url": "CLICKHOUSE_URL",
    "default_customer_id": "DEFAULT_CUSTOMER_ID", "collection_interval": "COLLECTION_INTERVAL",
    "task_time_limit": "TASK_TIME_LIMIT", "max_retries": "MAX_RETRIES",
    "retry_delay": "RETRY_DELAY",
}


def config_schema() -> dict:
    """The known keys of the TOML file, with every installed provider's customer table."""
    customer: dict = {}
    for spec in providers.specs().values():
        customer.update(dict.fromkeys(spec.legacy_keys))
        customer[spec.name] = dict.fromkeys(spec.fields)
    return {"customers": {ANY_KEY: customer}, "schedules": [_SCHEDULE_KEYS], "api": _API_KEYS,
            "alerts": [_ALERT_KEYS]}


_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Customer:
    """A customer and its access to each of its providers (names of env vars, never secrets)."""

    id: str
    accounts: Mapping[str, Account]

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self.accounts)


@dataclass(frozen=True)
class Schedule:
    """A recurring collection: every `interval` seconds, or on a cron expression."""

    name: str
    provider: str
    data_types: tuple[str, ...]
    interval: int | None = None
    cron: str | None = None


@dataclass(frozen=True)
class ApiSettings:
    """`[api]`: where `--headless` serves the HTTP API, whose tokens it takes, its limits."""

    port: int | None = None  # None: no API unless --api-port
    host: str = "127.0.0.1"
    tokens_env: tuple[str, ...] = ()  # names of variables holding more tokens
    triggers_per_minute: int = 60  # per token
    wait_timeout: int = 300  # seconds a trigger with async_mode false waits for its run

    @property
    def token_vars(self) -> tuple[str, ...]:
        """Every variable that may hold a token, OPTIINFRA_API_TOKEN first."""
        return tuple(dict.fromkeys((API_TOKEN_VAR, *self.tokens_env)))


@dataclass(frozen=True)
class Alert:
    """A webhook told when collections keep failing, a slot is missed or every consumer stops.

    `url_env` names the environment variable holding its URL (which often carries a token)."""

    name: str
    url_env: str
    format: str = "json"  # json | slack
    after_failures: int = 3


@dataclass(frozen=True)
class Settings:
    home: Path
    redis_url: str | None
    database_url: str
    clickhouse_url: str
    default_customer_id: str
    collection_interval: int
    workers: int
    task_time_limit: int
    max_retries: int
    retry_delay: float
    keep_days: int
    customers: tuple[Customer, ...]
    schedules: tuple[Schedule, ...]
    config_path: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Seconds between checks of each provider API (0: only on `h` and by collections).
    provider_check_interval: int = 60
    # Providers' settings from the environment, by variable, validated at start (their specs).
    options: Mapping[str, object] = field(default_factory=dict)
    api: ApiSettings = ApiSettings()
    alerts: tuple[Alert, ...] = ()

    @property
    def mode(self) -> str:
        """'distributed' when the queue is shared through Redis, else 'embedded'."""
        return "distributed" if self.redis_url else "embedded"

    @property
    def log_path(self) -> Path:
        return self.home / "optiinfra.log"

    def queue_location(self) -> tuple[str, str]:
        """Where the queue lives (never its password) and what to do when it can't be reached."""
        if not self.redis_url:
            path = self.home / "queue.db"
            return f"the SQLite queue at {path}", f"Check that {path} is writable."
        parts = urlsplit(self.redis_url)
        try:
            port = parts.port or 6379
        except ValueError:
            port = "?"
        address = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{port}"
        var = "REDIS_URL" if self.env.get("REDIS_URL", "").strip() else "REDIS_HOST/REDIS_PORT"
        return (f"Redis at {address}, from {var}",
                f"Check that Redis is running there, or point {var} at one that is.")

    @cached_property
    def _customers_by_id(self) -> dict[str, Customer]:
        # By id: a fan-out over 10,000 customers looks each one up (cached_property writes
        # the instance's __dict__, which a frozen dataclass allows).
        return {c.id: c for c in self.customers}

    def customer(self, customer_id: str) -> Customer:
        found = self._customers_by_id.get(customer_id)
        if found is not None:
            return found
        known = ", ".join(c.id for c in self.customers)
        raise ConfigError(
            f"Unknown customer {customer_id!r}. Configured customers: {known}. "
            "Add it under [customers] in the OPTIINFRA_CONFIG file."
        )

    def account(self, customer_id: str, provider: str) -> Account:
        """The customer's access to `provider`; ConfigError saying how to configure it."""
        spec = providers.spec(provider)
        found = self.customer(customer_id).accounts.get(provider)
        if found is None:
            fields = ", ".join(f"{k} ({f.meaning})" for k, f in spec.fields.items())
            standard = (f"Set {' or '.join(spec.detect)} where the workers run (the default "
                        "customer's standard environment), or add"
                        if customer_id == self.default_customer_id and spec.detect else "Add")
            raise ConfigError(
                f"Customer {customer_id!r} has no {spec.title} access configured. {standard} "
                f"[customers.{customer_id}.{provider}] to the OPTIINFRA_CONFIG file with: "
                f"{fields}.")
        return found

    def customers_with(self, provider: str) -> list[Customer]:
        """The customers configured for `provider` (credentials present or not)."""
        return [c for c in self.customers if provider in c.accounts]

    def option(self, var: str) -> object:
        """A provider's setting from the environment (VAR as its spec names it), validated."""
        if var not in self.options:
            raise ConfigError(f"{var} is not a setting of any installed provider.")
        return self.options[var]

    def credential(self, customer_id: str, provider: str, account: Account | None = None) -> str:
        """The secret of a customer's provider keyed by one secret variable (of `account`, else
        the customer's configured one), read from this process's environment."""
        spec = providers.spec(provider)
        account = account or self.account(customer_id, provider)
        key = next(k for k, f in spec.fields.items() if f.env and f.secret)
        var = account.get(key)
        value = self.env.get(var, "").strip() if var else ""
        if not value:
            raise ConfigError(
                f"{var} is not set: the {spec.title} credential for customer {customer_id!r} "
                f"is missing. Export {var}=<your {spec.title} key> where the workers run.")
        return value

    def missing_credential(self, customer_id: str, provider: str) -> str | None:
        """The env var to set when the customer's credential for `provider` is unset or empty
        in this process's environment; None when it is there."""
        spec = providers.spec(provider)
        account = self.customer(customer_id).accounts.get(provider)
        if account is None:
            return f"[customers.{customer_id}.{provider}] in the OPTIINFRA_CONFIG file"
        return spec.missing_credential(account, self.env)

    def alert_urls(self) -> dict[str, str]:
        """Each alert's webhook URL from this process's environment, by alert name; ConfigError
        naming every variable that is unset or not an http(s) URL (never the value)."""
        urls, problems = {}, []
        for alert in self.alerts:
            url = self.env.get(alert.url_env, "").strip()
            if not url:
                problems.append(f"{alert.url_env} is not set")
            elif urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                problems.append(f"{alert.url_env} is not an http:// or https:// URL")
            else:
                urls[alert.name] = url
        if problems:
            raise ConfigError(
                f"{'; '.join(problems)}: the webhook URL of [[alerts]] in {self.config_path}. "
                "Export each variable with the webhook's URL where the workers run, or remove "
                "its [[alerts]] entry.")
        return urls

    def secrets(self) -> tuple[str, ...]:
        """Every credential value this process knows, for scrubbing them from text."""
        # Asked for every log record: computed once per set of installed providers (the
        # settings themselves never change), not once per record over every customer. A
        # tuple, the same one each time: nothing to copy, and scrub's masker is cached by it.
        key = providers.names()
        cached = self.__dict__.get("_secrets")
        if cached is None or cached[0] != key:
            cached = (key, tuple(self._find_secrets()))
            object.__setattr__(self, "_secrets", cached)
        return cached[1]

    def _find_secrets(self) -> list[str]:
        names: set[str] = {a.url_env for a in self.alerts}  # webhook URLs often hold a token
        for spec in providers.specs().values():
            names.update(spec.secret_vars)
            for c in self.customers_with(spec.name):
                account = c.accounts[spec.name]
                names.update(v for k, f in spec.fields.items()
                             if f.env and f.secret and (v := account.get(k)))
        names.update(self.api.token_vars)
        return [self.env[n] for n in sorted(names) if self.env.get(n, "").strip()]


def default_home(env: Mapping[str, str]) -> Path:
    if env.get("OPTIINFRA_HOME"):
        return Path(env["OPTIINFRA_HOME"]).expanduser()
    return Path(platformdirs.user_data_dir("optiinfra", appauthor=False))


def config_file(env: Mapping[str, str]) -> Path | None:
    """OPTIINFRA_CONFIG, else `config.toml` in the platform's config dir when it exists
    (`~/.config/optiinfra/config.toml` on Linux); None: no file, environment only."""
    if env.get("OPTIINFRA_CONFIG"):
        return Path(env["OPTIINFRA_CONFIG"]).expanduser()
    found = Path(platformdirs.user_config_dir("optiinfra", appauthor=False)) / "config.toml"
    return found if found.is_file() else None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the variable and the fix."""
    env = dict(os.environ if env is None else env)
    home = default_home(env).resolve()
    config_path = config_file(env)
    doc = _read_toml(config_path) if config_path else {}
    check_known_keys(doc, config_path)

    default_customer_id = _identifier(env, "DEFAULT_CUSTOMER_ID", "default_customer")
    interval = env_int(env, "COLLECTION_INTERVAL", 900, minimum=1)
    options = {o.var: o.parse(env) for spec in providers.specs().values() for o in spec.options}
    customers = _customers(doc, default_customer_id, config_path, env)
    schedules = _schedules(doc, interval, config_path, customers)
    alerts = _alerts(doc, config_path)

    return Settings(
        home=home,
        redis_url=_redis_url(env),
        database_url=env_url(env, "DATABASE_URL", f"sqlite:///{home / 'history.db'}",
                          ("sqlite", "postgres", "postgresql")),
        clickhouse_url=env_url(env, "CLICKHOUSE_URL", f"chdb://{home / 'clickhouse'}",
                            ("chdb", "http", "https", "clickhouse")),
        default_customer_id=default_customer_id,
        collection_interval=interval,
        workers=env_int(env, "OPTIINFRA_WORKERS", 2, minimum=0, maximum=64),
        task_time_limit=env_int(env, "TASK_TIME_LIMIT", 1800, minimum=1),
        max_retries=env_int(env, "MAX_RETRIES", 3, minimum=0, maximum=100),
        retry_delay=env_float(env, "RETRY_DELAY", 60.0, minimum=0.0),
        keep_days=env_int(env, "OPTIINFRA_KEEP_DAYS", 90, minimum=1),
        customers=customers,
        schedules=schedules,
        config_path=config_path,
        env=env,
        provider_check_interval=_provider_check_interval(env),
        options=options,
        api=_api(doc.get("api", {}), config_path),
        alerts=alerts,
    )


def validate_data_types(provider: str, data_types: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Parse 'cost,resource' or a list; empty means the provider's default types."""
    spec = providers.spec(provider)
    if isinstance(data_types, str):
        data_types = [t.strip() for t in data_types.split(",") if t.strip()]
    if data_types is not None and not isinstance(data_types, (list, tuple)):
        raise ConfigError(f"Data types for {provider} must be a list such as [\"cost\"], "
                          f"not {data_types!r}.")
    if not data_types:
        return spec.default_types
    for t in data_types:
        if t not in spec.data_types:
            raise ConfigError(
                f"Unknown data type {t!r} for {provider}. Choose from: {', '.join(spec.data_types)}."
            )
    return ordered_types(provider, data_types)


def all_data_types() -> tuple[str, ...]:
    """Every data type some installed provider collects, in the providers' order."""
    return tuple(dict.fromkeys(t for s in providers.specs().values() for t in s.data_types))


def check_data_type_names(data_types: list[str] | tuple[str, ...]) -> None:
    """ConfigError for the first type no installed provider collects, listing each one's."""
    for t in data_types:
        if t not in all_data_types():
            by_provider = "; ".join(f"{s.name}: {', '.join(s.data_types)}"
                                    for s in providers.specs().values())
            raise ConfigError(f"Unknown data type {t!r}. Choose from ({by_provider}).")


def ordered_types(provider: str, data_types: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Data types in their canonical order: the provider's own, unknown ones after it."""
    if isinstance(data_types, str):
        data_types = [t for t in data_types.split(",") if t]
    spec = providers.specs().get(provider)
    rank = {t: i for i, t in enumerate(spec.data_types if spec else ())}
    # A stable sort: types the provider doesn't declare keep their order, after its own.
    return tuple(sorted(dict.fromkeys(data_types), key=lambda t: rank.get(t, len(rank))))


def validate_customer_id(value: str, source: str = "customer id") -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ConfigError(
            f"{source} {value!r} is not valid: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit."
        )
    return value


# --- parsing helpers -------------------------------------------------------------------------


def _problem(var: str, value: object, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{var}={value!r}: {problem}. {fix}")


def env_int(env: Mapping[str, str], var: str, default: int, minimum: int | None = None,
            maximum: int | None = None, meaning: str = "a whole number") -> int:
    """VAR as a whole number in its bounds, `default` when unset; ConfigError with the fix
    ("Set it to `meaning`, between ...")."""
    return _env_number(env, var, default, int, "not a whole number", minimum, maximum, meaning)


def env_float(env: Mapping[str, str], var: str, default: float, minimum: float = 0.0) -> float:
    """VAR as a number of at least `minimum`, `default` when unset; ConfigError with the fix."""
    return _env_number(env, var, default, float, "not a number", minimum, None, "a number")


_N = TypeVar("_N", int, float)


def _env_number(env: Mapping[str, str], var: str, default: _N, kind: type[_N], unparsed: str,
                minimum: _N | None, maximum: _N | None, meaning: str) -> _N:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    fmt = "g" if kind is float else "d"  # 60.0 shows as 60
    bounds = ("" if minimum is None else f", at least {minimum:{fmt}}" if maximum is None
              else f", between {minimum:{fmt}} and {maximum:{fmt}}")
    fix = f"Set it to {meaning}{bounds} (default {default:{fmt}})."
    try:
        value = kind(raw)
    except ValueError:
        raise _problem(var, raw, unparsed, fix) from None
    if (value != value or minimum is not None and value < minimum  # NaN is out of any range
            or maximum is not None and value > maximum):
        raise _problem(var, raw, "out of range", fix)
    return value


def _provider_check_interval(env: Mapping[str, str]) -> int:
    # Each check is an API request: at most one a minute (0 turns the timer off).
    value = env_int(env, "PROVIDER_CHECK_INTERVAL", 60, minimum=0)
    if 0 < value < 60:
        raise _problem("PROVIDER_CHECK_INTERVAL", value, "below 60 seconds",
                       "Set 0 (no timed checks) or at least 60, so that checks don't spend "
                       "the provider's API budget.")
    return value


def _identifier(env: Mapping[str, str], var: str, default: str) -> str:
    raw = env.get(var, "").strip() or default
    if not _ID_RE.match(raw):
        raise _problem(var, raw, "not a valid identifier",
                       "Use 1-64 letters, digits, '_', '-' or '.'.")
    return raw


def env_url(env: Mapping[str, str], var: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    scheme = urlparse(raw).scheme
    if scheme not in schemes:
        # Never echo a URL back: it may carry a password.
        raise ConfigError(
            f"{var} has scheme {scheme or '(none)'!r}, which is not supported. "
            f"Use one of: {', '.join(s + '://' for s in schemes)}."
        )
    return raw


def _redis_url(env: Mapping[str, str]) -> str | None:
    if env.get("REDIS_URL", "").strip():
        return env_url(env, "REDIS_URL", "", ("redis", "rediss", "unix"))
    host = env.get("REDIS_HOST", "").strip()
    if not host:
        return None
    port = env_int(env, "REDIS_PORT", 6379, minimum=1, maximum=65535)
    db = env_int(env, "REDIS_DB", 0, minimum=0, maximum=1024)
    return f"redis://{host}:{port}/{db}"


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"OPTIINFRA_CONFIG={str(path)!r}: the file does not exist. "
                          "Create it or unset OPTIINFRA_CONFIG.") from None
    except PermissionError:
        raise ConfigError(f"OPTIINFRA_CONFIG={str(path)!r}: the file can't be read "
                          "(permission denied). Fix its permissions.") from None
    except IsADirectoryError:
        raise ConfigError(f"OPTIINFRA_CONFIG={str(path)!r} is a directory; "
                          "point it at a TOML file.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text. Save it as UTF-8 TOML.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}). Fix the syntax there.") from None


def check_known_keys(doc: dict, path: Path | None) -> None:
    """Raise ConfigError for the first key the file holds that config_schema() doesn't know."""
    _check_table(doc, config_schema(), "", "at the top level", path)


def _check_table(table: dict, schema: dict, where: str, place: str, path: Path | None) -> None:
    for key, value in table.items():
        full = f"{where}.{key}" if where else key
        if key not in schema and ANY_KEY not in schema:
            raise _unknown_key(key, full, schema, place, path)
        sub = schema.get(key, schema.get(ANY_KEY))
        # A value of the wrong shape is left to the parsers: their messages give the shape.
        if isinstance(sub, dict) and isinstance(value, dict):
            _check_table(value, sub, full, f"in [{full}]", path)
        elif isinstance(sub, list) and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _check_table(item, sub[0], f"{full}[{i}]", f"in each [[{full}]]", path)


def _unknown_key(key: str, full: str, schema: dict, place: str, path: Path | None) -> ConfigError:
    known = [k for k in schema if k != ANY_KEY]
    specs = providers.specs()
    provider = key.removesuffix("_api_key_env")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    env_only = dict(_ENV_ONLY_KEYS, **{o.var.lower(): o.var for s in specs.values()
                                       for o in s.options})
    if provider != key and provider in specs:
        spec = specs[provider]
        hint = (f" {provider} takes no API key variable: its access goes in a "
                f"[customers.<id>.{provider}] table ({', '.join(spec.fields)}); the default "
                "customer's comes from its standard environment (see the README).")
    elif provider != key:
        hint = f" {provider!r} is not a supported provider (supported: {', '.join(specs)})."
    elif place == "in [api]" and "token" in key.lower():
        hint = (f" A token never goes in this file: set {API_TOKEN_VAR}, or name the variables "
                "that hold more tokens in tokens_env = [\"NAME\", ...].")
    elif close:
        hint = f" Did you mean {close[0]}?"
    elif place == "at the top level" and key.lower() in env_only:
        hint = (f" That setting comes from the environment, not this file: "
                f"set {env_only[key.lower()]}.")
    else:
        hint = ""
    return ConfigError(f"{path}: {full} is not a known key.{hint} "
                       f"Keys allowed {place}: {', '.join(known)}.")


def _customers(doc: dict, default_id: str, path: Path | None,
               env: Mapping[str, str]) -> tuple[Customer, ...]:
    table = doc.get("customers", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [customers] must be a table of customer ids.")
    specs = providers.specs()
    found: dict[str, Customer] = {default_id: Customer(default_id, _standard_accounts(env, default_id))}
    for cid, entry in table.items():
        validate_customer_id(cid, f"{path}: customer id")
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: [customers.{cid}] must be a table, e.g. "
                              f"[customers.{cid}.<provider>] (providers: {', '.join(specs)}).")
        tables: dict[str, dict] = {}
        for key, value in entry.items():  # check_known_keys allowed only these keys
            legacy = next((s for s in specs.values() if key in s.legacy_keys), None)
            if legacy is not None:
                tables.setdefault(legacy.name, {})[legacy.legacy_keys[key]] = value
            elif not isinstance(value, dict):
                raise ConfigError(f"{path}: [customers.{cid}] {key} must be a table: "
                                  f"[customers.{cid}.{key}].")
            else:
                tables.setdefault(key, {}).update(value)
        default = cid == default_id
        accounts = dict(found[cid].accounts) if default else {}
        for provider, values in tables.items():
            # The default customer's table overrides its standard environment key by key.
            base = _standard_values(specs[provider], env) if default else {}
            accounts[provider] = _account(specs[provider], {**base, **values},
                                          f"{path}: [customers.{cid}.{provider}]", env, default,
                                          cid)
        found[cid] = Customer(cid, dict(sorted(accounts.items())))
    return tuple(found.values())


def _account(spec: providers.ProviderSpec, values: dict, where: str,
             env: Mapping[str, str], standard: bool = False, customer_id: str = "") -> Account:
    """A customer's table for one provider, checked by its spec (ConfigError naming `where`)."""
    for key, f in spec.fields.items():
        value = values.get(key)
        if value is None:
            if f.required:
                raise ConfigError(f"{where} needs {key}: {f.meaning}.")
            continue
        if not isinstance(value, str) or (f.env and not _ENV_NAME_RE.match(value)):
            what = ("must name an environment variable (the secret itself never goes in "
                    "this file)") if f.env else "must be a string"
            raise ConfigError(f"{where} {key} {what}.")
    account = Account(spec.name, dict(values), standard, customer_id)
    try:
        spec.typed_account(account, env)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return account


def _standard_accounts(env: Mapping[str, str], customer_id: str) -> dict[str, Account]:
    """The default customer's accounts: each provider's standard environment, for providers
    that are always offered or whose variables are set."""
    accounts = {}
    for spec in providers.specs().values():
        if spec.detect and not any(env.get(v, "").strip() for v in spec.detect):
            continue
        account = Account(spec.name, _standard_values(spec, env), True, customer_id)
        try:
            spec.typed_account(account, env)
        except ConfigError as exc:
            used = ", ".join(f.standard for f in spec.fields.values() if f.standard and not f.env)
            raise ConfigError(f"{used}: {exc}" if used else str(exc)) from None
        accounts[spec.name] = account
    return accounts


def _standard_values(spec: providers.ProviderSpec, env: Mapping[str, str]) -> dict[str, str]:
    values = {k: f.standard if f.env else env.get(f.standard, "").strip()
              for k, f in spec.fields.items() if f.standard}
    return {k: v for k, v in values.items() if v}


def _api(table: object, path: Path | None) -> ApiSettings:
    """`[api]`, each value checked (its keys were checked by check_known_keys)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: api must be a table ([api]).")
    where, default = f"{path}: [api]", ApiSettings()

    def number(key: str, low: int, high: int) -> int | None:
        value = table.get(key, getattr(default, key))
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or not low <= value <= high):
            raise ConfigError(f"{where} {key} must be a whole number between {low} and {high}.")
        return value

    host = table.get("host", default.host)
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"{where} host must be an address such as \"127.0.0.1\" (the default) "
                          "or \"0.0.0.0\" for every interface.")
    names = table.get("tokens_env", [])
    if not isinstance(names, list) or not all(
            isinstance(n, str) and _ENV_NAME_RE.match(n) for n in names):
        raise ConfigError(f"{where} tokens_env must be a list of names of environment variables "
                          "(tokens_env = [\"TEAM_A_TOKEN\"]), never the tokens themselves.")
    return ApiSettings(port=number("port", 1, 65535), host=host.strip(), tokens_env=tuple(names),
                       triggers_per_minute=number("triggers_per_minute", 1, 100_000),
                       wait_timeout=number("wait_timeout", 1, 86_400))


def _schedules(doc: dict, interval: int, path: Path | None,
               customers: tuple[Customer, ...]) -> tuple[Schedule, ...]:
    items = doc.get("schedules")
    specs = providers.specs()
    if items is None:
        # Each provider's own default schedules, for the providers some customer has.
        used = {p for c in customers for p in c.accounts}
        return tuple(Schedule(f"{s.name}-{'-'.join(d.data_types)}", s.name, d.data_types,
                              interval=d.interval or interval)
                     for s in specs.values() if s.name in used for d in s.schedules)
    if not isinstance(items, list):
        raise ConfigError(f"{path}: schedules must be an array of tables ([[schedules]]).")
    implicit = next((s.name for s in specs.values() if s.implicit), None)
    out: list[Schedule] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        where = f"{path}: schedules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table.")
        provider = item.get("provider", implicit)
        if provider is None:
            raise ConfigError(f"{where}: give provider = one of {', '.join(specs)}.")
        if not isinstance(provider, str) or provider not in specs:
            raise ConfigError(f"{where}: provider {provider!r} is not supported "
                              f"(choose from {', '.join(specs)}).")
        try:
            types = validate_data_types(provider, item.get("data_types"))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        name = item.get("name") or f"{provider}-{'-'.join(types)}-{i}"
        if not isinstance(name, str) or not _ID_RE.match(name) or name in names:
            raise ConfigError(f"{where}: name {name!r} must be a unique identifier.")
        names.add(name)
        cron, every = item.get("cron"), item.get("interval")
        if (cron is None) == (every is None):
            raise ConfigError(f"{where}: give exactly one of cron = \"*/15 * * * *\" "
                              "or interval = <seconds>.")
        if cron is not None:
            parse_cron(cron, where)
        elif not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"{where}: interval must be a whole number of seconds >= 1.")
        out.append(Schedule(name, provider, types, interval=every, cron=cron))
    return tuple(out)


def _alerts(doc: dict, path: Path | None) -> tuple[Alert, ...]:
    items = doc.get("alerts", [])
    if not isinstance(items, list):
        raise ConfigError(f"{path}: alerts must be an array of tables ([[alerts]]).")
    out: list[Alert] = []
    for i, item in enumerate(items):
        where = f"{path}: alerts[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table.")
        name = item.get("name")
        if not isinstance(name, str) or not _ID_RE.match(name) or any(a.name == name for a in out):
            raise ConfigError(f"{where}: name {name!r} must be a unique identifier "
                              "(letters, digits, '_', '-', '.').")
        url_env = item.get("url_env")
        if not isinstance(url_env, str) or not _ENV_NAME_RE.match(url_env):
            # Never echo the value: it may be the URL itself, token and all.
            raise ConfigError(
                f"{where}: url_env must name the environment variable that holds the webhook's "
                "URL, e.g. url_env = \"OPS_WEBHOOK_URL\" (the URL itself never goes in this "
                "file: it often carries a token).")
        fmt = item.get("format", "json")
        if fmt not in ALERT_FORMATS:
            raise ConfigError(f"{where}: format {fmt!r} is not supported; use "
                              f"{' or '.join(repr(f) for f in ALERT_FORMATS)}.")
        after = item.get("after_failures", 3)
        if not isinstance(after, int) or isinstance(after, bool) or not 1 <= after <= 100:
            raise ConfigError(f"{where}: after_failures must be a whole number from 1 to 100 "
                              "(failed scheduled runs in a row before the alert; default 3).")
        out.append(Alert(name, url_env, fmt, after))
    return tuple(out)
