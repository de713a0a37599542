"""Providers are plug-ins: entry points in the group `optiinfra_tui.providers`, each naming a
light ProviderSpec (what settings, the CLI, the dashboard and the schedules need to know).

Listing providers imports the specs only, never a provider's SDK: the collector's module is
imported when that provider collects (`load_collector`). Entry points are read from the
installed distributions, so every process on every host (a plain `huey_consumer` too) sees
the same providers. This module names no provider.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.extras import installed

GROUP = "optiinfra_tui.providers"

log = logging.getLogger("optiinfra.providers")


@dataclass(frozen=True)
class Field:
    """A key of a customer's `[customers.<id>.<provider>]` table."""

    meaning: str
    env: bool = False  # the value names an environment variable (the secret never goes in)
    secret: bool = False  # that variable's value is a secret: scrubbed from every text
    required: bool = False
    # The default customer's value: for an `env` field the variable's name itself, for
    # another the value read from this variable.
    standard: str | None = None


@dataclass(frozen=True)
class Option:
    """A provider setting read from the environment and validated at start."""

    var: str
    meaning: str
    parse: Callable[[Mapping[str, str]], Any]  # the value from the environment; ConfigError


@dataclass(frozen=True)
class DefaultSchedule:
    """A schedule the provider runs when the configuration file names none."""

    data_types: tuple[str, ...]
    interval: int | None = None  # seconds; None: COLLECTION_INTERVAL


@dataclass(frozen=True)
class Account:
    """One customer's access to one provider: the values of its table (names of environment
    variables, ids, URIs; never a secret)."""

    provider: str
    values: Mapping[str, str]
    standard: bool = False  # the default customer's, from the provider's standard environment
    customer_id: str = ""  # whose (for messages)

    def get(self, key: str) -> str | None:
        return self.values.get(key)


@dataclass(frozen=True)
class ProviderSpec:
    """What the rest of the product knows about a provider, without importing its code."""

    name: str
    title: str  # for people, as the provider spells its own name
    data_types: tuple[str, ...]  # in their canonical order
    fields: Mapping[str, Field]
    collector: str  # "package.module:Class", built as Class(settings, customer_id, account=...)
    default_types: tuple[str, ...] = ()  # what a run without types collects; empty: all
    schedules: tuple[DefaultSchedule, ...] = ()
    extra: str | None = None  # the optional dependency group bringing its SDK
    sdk: tuple[str, ...] = ()  # the modules that extra brings (checked without importing)
    options: tuple[Option, ...] = ()
    # Keys of [customers.<id>] itself that mean a field of this provider (older files).
    legacy_keys: Mapping[str, str] = field(default_factory=dict)
    # The default customer has this provider when one of these variables is set; empty: always.
    detect: tuple[str, ...] = ()
    # Variables of the standard environment holding secrets (scrubbed when set).
    secret_vars: tuple[str, ...] = ()
    # The provider a [[schedules]] entry without `provider` means (files from before plug-ins).
    implicit: bool = False
    colour: str = "#8a8a8a"
    # The account the collector takes, built (and checked: ConfigError) from an Account.
    parse: Callable[[Account, Mapping[str, str]], Any] | None = None
    # What is missing for the account to collect in `env`: a variable to set, or None.
    missing: Callable[[Account, Mapping[str, str]], str | None] | None = None

    def __post_init__(self) -> None:
        if not self.default_types:
            object.__setattr__(self, "default_types", self.data_types)

    @property
    def install(self) -> str | None:
        return f'pip install "optiinfra-tui[{self.extra}]"' if self.extra else None

    def extra_missing(self) -> str | None:
        """The install command when the SDK this provider needs is not installed, else None."""
        for module in self.sdk:
            if not installed(module):
                return self.install or f"install {module}"
        return None

    def missing_credential(self, account: Account, env: Mapping[str, str]) -> str | None:
        """The variable (or table key) to set before `account` can collect here, else None."""
        if self.missing is not None:
            return self.missing(account, env)
        for key, f in self.fields.items():
            value = account.get(key)
            if f.env and value and not env.get(value, "").strip():
                return value
            if f.required and not value:
                return f.standard if account.standard and f.standard else key
        return None

    def typed_account(self, account: Account, env: Mapping[str, str]) -> Any:
        return self.parse(account, env) if self.parse is not None else account

    def load_collector(self) -> type:
        """The collector class; ConfigError naming the install command when its SDK is missing."""
        missing = self.extra_missing()
        if missing:
            raise ConfigError(f"Collecting from {self.title} needs its SDK ({', '.join(self.sdk)}), "
                              f"which is not installed. Install it: {missing}")
        module, _, name = self.collector.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise ConfigError(f"The {self.name} provider's collector {self.collector} can't be "
                              f"imported ({exc}). "
                              f"{'Install it: ' + self.install if self.install else 'Reinstall it.'}"
                              ) from None


_lock = threading.Lock()
_found: dict[str, ProviderSpec] | None = None
# Specs added in this process only (benchmarks): never seen by other processes.
_local: dict[str, ProviderSpec] = {}


def _discover() -> dict[str, ProviderSpec]:
    specs: dict[str, ProviderSpec] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        try:
            spec = ep.load()
        except Exception as exc:  # a broken plug-in: said plainly, at start
            raise ConfigError(f"The provider plug-in {ep.name!r} ({ep.value}) can't be loaded: "
                              f"{type(exc).__name__}: {exc}. Reinstall or uninstall the package "
                              "that declares it.") from None
        if not isinstance(spec, ProviderSpec) or spec.name != ep.name:
            raise ConfigError(f"The provider plug-in {ep.name!r} ({ep.value}) is not a "
                              f"ProviderSpec named {ep.name!r}. Fix or uninstall it.")
        specs.setdefault(spec.name, spec)  # the first distribution wins, as Python's path does
    return specs


def specs() -> Mapping[str, ProviderSpec]:
    """Every provider, by name, in name order."""
    global _found
    with _lock:
        if _found is None:
            _found = _discover()
        merged = {**_found, **_local}
    return MappingProxyType(dict(sorted(merged.items())))


def names() -> tuple[str, ...]:
    return tuple(specs())


def spec(name: str) -> ProviderSpec:
    """The provider `name`; ConfigError listing the known ones."""
    found = specs().get(name) if isinstance(name, str) else None
    if found is None:
        raise ConfigError(f"Unknown provider {name!r}. Supported providers: "
                          f"{', '.join(names())}.")
    return found


def register(provider: ProviderSpec) -> None:
    """Add a provider in this process only (benchmarks); plug-ins declare an entry point."""
    with _lock:
        _local[provider.name] = provider


def colour(name: str) -> str:
    found = specs().get(name)
    return found.colour if found else ProviderSpec.colour
