"""The HTTP API that `--headless --api-port` serves beside the workers (the `api` extra).

Nothing in the core imports this package, and it imports FastAPI and uvicorn only when a
server is built: `require_api_extra()` first says what to install when they are missing.
"""

from __future__ import annotations

from optiinfra_tui.extras import require

MODULES = ("fastapi", "uvicorn")


def require_api_extra() -> None:
    """ConfigError naming `pip install "optiinfra-tui[api]"` when FastAPI or uvicorn is missing."""
    require("api", MODULES, "The HTTP API (--api-port)")
