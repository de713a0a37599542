"""`optiinfra-tui serve`: the dashboard in a browser (the `web` extra, textual-serve).

Each browser session is a watcher process (`optiinfra-tui --workers 0`): no workers, never
the embedded chDB. Nothing in the core imports this package.
"""

from __future__ import annotations

from optiinfra_tui.extras import require

MODULES = ("textual_serve", "aiohttp", "aiohttp_jinja2", "jinja2")


def require_web_extra() -> None:
    """ConfigError naming `pip install "optiinfra-tui[web]"` when textual-serve is missing."""
    require("web", MODULES, "The dashboard in a browser (serve)")
