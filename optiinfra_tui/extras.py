"""Optional parts installed as extras (`pip install "optiinfra-tui[api]"`): whether one is
there, asked without importing it, and the error that names the install command."""

from __future__ import annotations

import sys

from optiinfra_tui.errors import ConfigError


def installed(module: str) -> bool:
    """Whether `module` can be imported, asked of the import system's finders without
    importing it or its parent packages."""
    path = None
    for depth in range(1, module.count(".") + 2):
        name = module.rsplit(".", module.count(".") + 1 - depth)[0]
        if name in sys.modules:
            found = sys.modules[name]
            if found is None:  # blocked on purpose
                return False
            path = getattr(found, "__path__", None)
            continue
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            try:
                spec = find(name, path) if find else None
            except ImportError:
                return False
            if spec is not None:
                break
        if spec is None:
            return False
        path = spec.submodule_search_locations
    return True


def require(extra: str, modules: tuple[str, ...], what: str) -> None:
    """ConfigError naming the install command when a module of `extra` is missing."""
    missing = [m for m in modules if not installed(m)]
    if missing:
        raise ConfigError(f"{what} needs the {extra} extra ({', '.join(missing)} not installed). "
                          f"Install it: pip install \"optiinfra-tui[{extra}]\" (pip install -e "
                          f"\".[{extra}]\" in a clone).")
