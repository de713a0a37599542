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
from pathlib import Path
from urllib.parse import urlparse, urlsplit

import platformdirs

from optiinfra_tui.cron import parse_cron
from optiinfra_tui.errors import ConfigError

PROVIDERS: dict[str, tuple[str, ...]] = {
    "vultr": ("cost", "account", "resource"),
    "aws": ("cost", "export"),
    "gcp": ("cost",),
}
DEFAULT_TYPES: dict[str, tuple[str, ...]] = {"vultr": ("cost",), "aws": ("cost",), "gcp": ("cost",)}
PROVIDER_KEY_VARS = {"vultr": "VULTR_API_KEY"}
VULTR_API_URL_DEFAULT = "https://api.vultr.com/v2"

# Every key the TOML file may hold, level by level: the one place to extend when the file
# grows (e.g. a provider sub-table [customers.acme.vultr] becomes an entry in _CUSTOMER_KEYS).
# A dict is a table of known keys, ANY_KEY inside it stands for keys the user names (customer
# ids), a one-element list is an array of tables, and None a value checked by its own parser.
ANY_KEY = "*"
# Providers keyed by one API key (AWS access is more than a key: its sub-table comes with
# the provider plug-ins; GCP's access is a key file, set up in its collector).
_CUSTOMER_KEYS: dict = {f"{p}_api_key_env": None for p in PROVIDER_KEY_VARS}
_SCHEDULE_KEYS: dict = dict.fromkeys(("name", "provider", "data_types", "interval", "cron"))
CONFIG_SCHEMA: dict = {
    "customers": {ANY_KEY: _CUSTOMER_KEYS},
    "schedules": [_SCHEDULE_KEYS],
}
# Settings that live in the environment: naming one in the file gets its variable as the fix.
_ENV_ONLY_KEYS = {
    "workers": "OPTIINFRA_WORKERS (or --workers)", "keep_days": "OPTIINFRA_KEEP_DAYS",
    "home": "OPTIINFRA_HOME", "redis_url": "REDIS_URL", "database_url": "DATABASE_URL",
    "clickhouse_url": "CLICKHOUSE_URL", "vultr_api_url": "VULTR_API_URL",
    "vultr_api_key": "VULTR_API_KEY", "vultr_max_rps": "VULTR_MAX_RPS",
    "default_customer_id": "DEFAULT_CUSTOMER_ID", "collection_interval": "COLLECTION_INTERVAL",
    "task_time_limit": "TASK_TIME_LIMIT", "max_retries": "MAX_RETRIES",
    "retry_delay": "RETRY_DELAY",
}

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Customer:
    """A customer and, per provider, the name of the env var holding its credential."""

    id: str
    credential_vars: Mapping[str, str]


@dataclass(frozen=True)
class Schedule:
    """A recurring collection: every `interval` seconds, or on a cron expression."""

    name: str
    provider: str
    data_types: tuple[str, ...]
    interval: int | None = None
    cron: str | None = None


@dataclass(frozen=True)
class Settings:
    home: Path
    redis_url: str | None
    database_url: str
    clickhouse_url: str
    vultr_api_url: str
    vultr_max_rps: float
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

    def customer(self, customer_id: str) -> Customer:
        for c in self.customers:
            if c.id == customer_id:
                return c
        known = ", ".join(c.id for c in self.customers)
        raise ConfigError(
            f"Unknown customer {customer_id!r}. Configured customers: {known}. "
            "Add it under [customers] in the OPTIINFRA_CONFIG file."
        )

    def credential(self, customer_id: str, provider: str) -> str:
        """The secret for a customer's provider, read from this process's environment."""
        var = self.customer(customer_id).credential_vars.get(provider)
        if not var:
            raise ConfigError(
                f"Customer {customer_id!r} has no {provider} credential configured. "
                f"Set {provider}_api_key_env for it in the OPTIINFRA_CONFIG file."
            )
        value = self.env.get(var, "").strip()
        if not value:
            raise ConfigError(
                f"{var} is not set: the {provider} API key for customer {customer_id!r} "
                f"is missing. Export {var}=<your {provider} API key> where the workers run."
            )
        return value

    def missing_credential(self, customer_id: str, provider: str) -> str | None:
        """The env var to set when the customer's credential for `provider` is unset or
        empty in this process's environment; None when it is there."""
        var = self.customer(customer_id).credential_vars.get(provider)
        if var is None:
            return f"{provider}_api_key_env for {customer_id}"
        return None if self.env.get(var, "").strip() else var

    def secrets(self) -> list[str]:
        """Every credential value this process knows, for scrubbing them from text."""
        names = {v for c in self.customers for v in c.credential_vars.values()}
        return [self.env[n] for n in names if self.env.get(n)]


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
    interval = _int(env, "COLLECTION_INTERVAL", 900, minimum=1)
    customers = _customers(doc, default_customer_id, config_path)
    schedules = _schedules(doc, interval, config_path)

    return Settings(
        home=home,
        redis_url=_redis_url(env),
        database_url=_url(env, "DATABASE_URL", f"sqlite:///{home / 'history.db'}",
                          ("sqlite", "postgres", "postgresql")),
        clickhouse_url=_url(env, "CLICKHOUSE_URL", f"chdb://{home / 'clickhouse'}",
                            ("chdb", "http", "https", "clickhouse")),
        vultr_api_url=_url(env, "VULTR_API_URL", VULTR_API_URL_DEFAULT,
                           ("http", "https")).rstrip("/"),
        vultr_max_rps=_float(env, "VULTR_MAX_RPS", 30.0, minimum=0.1),
        default_customer_id=default_customer_id,
        collection_interval=interval,
        workers=_int(env, "OPTIINFRA_WORKERS", 2, minimum=0, maximum=64),
        task_time_limit=_int(env, "TASK_TIME_LIMIT", 1800, minimum=1),
        max_retries=_int(env, "MAX_RETRIES", 3, minimum=0, maximum=100),
        retry_delay=_float(env, "RETRY_DELAY", 60.0, minimum=0.0),
        keep_days=_int(env, "OPTIINFRA_KEEP_DAYS", 90, minimum=1),
        customers=customers,
        schedules=schedules,
        config_path=config_path,
        env=env,
        provider_check_interval=_provider_check_interval(env),
    )


def validate_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise ConfigError(
            f"Unknown provider {provider!r}. Supported providers: {', '.join(PROVIDERS)}."
        )
    return provider


def validate_data_types(provider: str, data_types: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Parse 'cost,resource' or a list; empty means the provider's default types."""
    validate_provider(provider)
    if isinstance(data_types, str):
        data_types = [t.strip() for t in data_types.split(",") if t.strip()]
    if data_types is not None and not isinstance(data_types, (list, tuple)):
        raise ConfigError(f"Data types for {provider} must be a list such as [\"cost\"], "
                          f"not {data_types!r}.")
    if not data_types:
        return DEFAULT_TYPES[provider]
    allowed = PROVIDERS[provider]
    for t in data_types:
        if t not in allowed:
            raise ConfigError(
                f"Unknown data type {t!r} for {provider}. Choose from: {', '.join(allowed)}."
            )
    return ordered_types(provider, data_types)


def ordered_types(provider: str, data_types: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Data types in their canonical order: the provider's own, unknown ones after it."""
    if isinstance(data_types, str):
        data_types = [t for t in data_types.split(",") if t]
    rank = {t: i for i, t in enumerate(PROVIDERS.get(provider, ()))}
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


def _int(env: Mapping[str, str], var: str, default: int, minimum: int | None = None,
         maximum: int | None = None) -> int:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _problem(var, raw, "not a whole number", f"Set it to an integer (default {default}).") from None
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise _problem(var, raw, "out of range", f"Set it to a value {bounds} (default {default}).")
    return value


def _float(env: Mapping[str, str], var: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _problem(var, raw, "not a number", f"Set it to a number (default {default:g}).") from None
    if value < minimum or value != value:
        raise _problem(var, raw, "out of range", f"Set it to at least {minimum:g} (default {default:g}).")
    return value


def _provider_check_interval(env: Mapping[str, str]) -> int:
    # Each check is an API request: at most one a minute (0 turns the timer off).
    value = _int(env, "PROVIDER_CHECK_INTERVAL", 60, minimum=0)
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


def _url(env: Mapping[str, str], var: str, default: str, schemes: tuple[str, ...]) -> str:
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
        return _url(env, "REDIS_URL", "", ("redis", "rediss", "unix"))
    host = env.get("REDIS_HOST", "").strip()
    if not host:
        return None
    port = _int(env, "REDIS_PORT", 6379, minimum=1, maximum=65535)
    db = _int(env, "REDIS_DB", 0, minimum=0, maximum=1024)
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
    """Raise ConfigError for the first key the file holds that CONFIG_SCHEMA doesn't know."""
    _check_table(doc, CONFIG_SCHEMA, "", "at the top level", path)


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
    provider = key.removesuffix("_api_key_env")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if provider != key and provider in PROVIDERS and provider not in PROVIDER_KEY_VARS:
        hint = (f" {provider} takes no API key variable: it collects for the default customer "
                "from its own standard environment (see the README).")
    elif provider != key and provider not in PROVIDERS:
        hint = f" {provider!r} is not a supported provider (supported: {', '.join(PROVIDERS)})."
    elif close:
        hint = f" Did you mean {close[0]}?"
    elif place == "at the top level" and key.lower() in _ENV_ONLY_KEYS:
        hint = (f" That setting comes from the environment, not this file: "
                f"set {_ENV_ONLY_KEYS[key.lower()]}.")
    else:
        hint = ""
    return ConfigError(f"{path}: {full} is not a known key.{hint} "
                       f"Keys allowed {place}: {', '.join(known)}.")


def _customers(doc: dict, default_id: str, path: Path | None) -> tuple[Customer, ...]:
    table = doc.get("customers", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [customers] must be a table of customer ids.")
    found: dict[str, Customer] = {
        default_id: Customer(default_id, dict(PROVIDER_KEY_VARS)),
    }
    for cid, spec in table.items():
        validate_customer_id(cid, f"{path}: customer id")
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: [customers.{cid}] must be a table, e.g. "
                              'vultr_api_key_env = "ACME_VULTR_API_KEY".')
        creds: dict[str, str] = {}
        for key, value in spec.items():
            provider = key.removesuffix("_api_key_env")  # check_known_keys allowed only these
            if not isinstance(value, str) or not _ENV_NAME_RE.match(value):
                raise ConfigError(f"{path}: [customers.{cid}] {key} must name an environment "
                                  "variable (the key itself never goes in this file).")
            creds[provider] = value
        found[cid] = Customer(cid, creds)
    return tuple(found.values())


def _schedules(doc: dict, interval: int, path: Path | None) -> tuple[Schedule, ...]:
    items = doc.get("schedules")
    if items is None:
        return (Schedule("vultr-cost", "vultr", ("cost",), interval=interval),)
    if not isinstance(items, list):
        raise ConfigError(f"{path}: schedules must be an array of tables ([[schedules]]).")
    out: list[Schedule] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        where = f"{path}: schedules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table.")
        provider = item.get("provider", "vultr")
        if not isinstance(provider, str) or provider not in PROVIDERS:
            raise ConfigError(f"{where}: provider {provider!r} is not supported "
                              f"(choose from {', '.join(PROVIDERS)}).")
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
