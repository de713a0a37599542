"""textual-serve, behind a sign-in: every page but the sign-in one needs a session.

A session comes from a token typed on the page (the API's tokens) or from the signed link
printed at start; it is an HttpOnly, SameSite=Strict cookie signed with a key that dies with
the process. Each browser session runs `optiinfra-tui --workers 0`: a watcher.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.web_runner import GracefulExit
from textual_serve.server import Server, to_int

from optiinfra_tui.access import Tokens
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import API_TOKEN_VAR
from optiinfra_tui.web.links import Signer

log = logging.getLogger("optiinfra.web")

TEMPLATES = Path(__file__).resolve().parent / "templates"
COOKIE = "optiinfra_session"
LINK_SECONDS = 24 * 3600
SESSION_SECONDS = 12 * 3600
# What a browser session runs: the dashboard with no workers, which never opens chDB.
WATCHER = [sys.executable, "-m", "optiinfra_tui", "--workers", "0"]
OPEN_PATHS = ("/login", "/favicon.ico")


class DashboardServer(Server):
    """The dashboard for browsers on `host:port`, open only to signed-in sessions."""

    def __init__(self, host: str, port: int, tokens: Tokens, public_url: str | None = None,
                 signer: Signer | None = None) -> None:
        super().__init__(shlex.join(WATCHER), host=host, port=port, title="OptiInfra",
                         public_url=public_url, templates_path=TEMPLATES)
        self.own_url = public_url  # None: each page's URLs follow the address it was asked at
        self.tokens = tokens
        self.signer = signer or Signer()

    def sign_in_link(self) -> str:
        base = self.own_url or f"http://{_netloc(self.host, self.port)}"
        return f"{base.rstrip('/')}/login?link={self.signer.sign('link', LINK_SECONDS)}"

    # --- the aiohttp app -------------------------------------------------------------------

    async def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate], client_max_size=64 * 1024)
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path),
                             autoescape=True)
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/login", self.handle_link, name="login"),
            web.post("/login", self.handle_token),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.get("/download/{key}", self.handle_download, name="download"),
            web.static("/static", self.statics_path, name="static"),
        ])
        app.on_startup.append(self.on_startup)
        return app

    def initialize_logging(self) -> None:
        pass  # the command set up ours (textual-serve's would print tracebacks with locals)

    async def on_startup(self, app: web.Application) -> None:
        pass  # the command printed where to go

    def listen(self) -> socket.socket:
        """Bind the port now: a taken one is a ConfigError before anything is printed."""
        host = self.host.strip("[]")
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so.
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"--host {self.host} --port {self.port}: can't listen there "
                              f"({exc.strerror}). Choose a free port, or an address of this "
                              "host.") from None
        return sock

    def serve(self, debug: bool = False, sock: socket.socket | None = None) -> None:
        """Serve until SIGINT/SIGTERM (then each session's dashboard is told to quit)."""
        sock = sock or self.listen()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        try:
            web.run_app(self._make_app(), sock=sock, handle_signals=False, loop=loop,
                        print=None, access_log=None)
        except GracefulExit:
            pass

    # --- who may come in -------------------------------------------------------------------

    def _signed_in(self, request: web.Request) -> bool:
        return self.signer.valid("session", request.cookies.get(COOKIE))

    @web.middleware
    async def _gate(self, request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith("/static/") or request.path in OPEN_PATHS:
            return await handler(request)
        if not self._signed_in(request):
            if request.path == "/":
                return self._login_page(request, "", status=401)
            log.warning("refused %s %s from %s: not signed in", request.method, request.path,
                        request.remote)
            raise web.HTTPUnauthorized(text="Sign in first: open / in a browser.")
        if request.path == "/ws" and not _same_origin(request):
            # Another site's page can open a WebSocket here; its browser would not send the
            # SameSite cookie, and this check refuses it even if one did.
            raise web.HTTPForbidden(text="This WebSocket is for the dashboard's own page.")
        return await handler(request)

    def _login_page(self, request: web.Request, problem: str, status: int = 200) -> web.Response:
        names = ", ".join(self.tokens.names) if self.tokens else ""
        response = aiohttp_jinja2.render_template(
            "login.html", request, {"problem": problem, "tokens": names})
        response.set_status(status)
        return response

    def _signed_in_response(self, request: web.Request, how: str) -> web.Response:
        log.info("browser session signed in from %s (%s)", request.remote, how)
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(COOKIE, self.signer.sign("session", SESSION_SECONDS),
                            max_age=SESSION_SECONDS, httponly=True, samesite="Strict", path="/",
                            secure=(self.own_url or "").startswith("https:"))
        return response

    async def handle_link(self, request: web.Request) -> web.Response:
        link = request.query.get("link")
        if link is None:
            return self._login_page(request, "")
        if self.signer.valid("link", link):
            return self._signed_in_response(request, "signed link")
        log.warning("refused a sign-in link from %s: expired or not signed here", request.remote)
        return self._login_page(request, "This link has expired or was not made by this server "
                                         "(a restart ends every link): use the one it printed "
                                         "last.", status=401)

    async def handle_token(self, request: web.Request) -> web.Response:
        if not _same_origin(request):
            raise web.HTTPForbidden(text="Sign in from the dashboard's own page.")
        form = await request.post()
        given = form.get("token")
        if isinstance(given, str) and self.tokens.match(given.strip()) is not None:
            return self._signed_in_response(request, self.tokens.match(given.strip()))
        log.warning("refused a token from %s", request.remote)
        return self._login_page(request, "That is not a token this server takes." if given else
                                "Enter a token.", status=401)

    # --- the page --------------------------------------------------------------------------

    async def handle_index(self, request: web.Request) -> web.Response:
        """textual-serve's page, its URLs on the address the browser used (cookies are kept
        per host: 127.0.0.1 and localhost are two)."""
        base = (self.own_url or f"{request.scheme}://{request.host}").rstrip("/")
        ws = ("wss:" if base.startswith("https:") else "ws:") + base.split(":", 1)[1]
        context: dict[str, Any] = {
            "font_size": to_int(request.query.get("fontsize", "16"), 16),
            "app_websocket_url": f"{ws}/ws",
            "config": {"static": {"url": f"{base}/static/"}},
            "application": {"name": self.title},
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)


def _same_origin(request: web.Request) -> bool:
    """No Origin (not a browser's cross-site request), or the one this request came to."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _netloc(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"[{shown}]:{port}" if ":" in shown and not shown.startswith("[") else f"{shown}:{port}"


def serve_dashboard(host: str, port: int, tokens: Tokens, public_url: str | None = None) -> int:
    """Print where to sign in, then serve until stopped; returns the exit code."""
    server = DashboardServer(host, port, tokens, public_url)
    sock = server.listen()
    print(f"OptiInfra dashboard for browsers on http://{_netloc(host, port)}/ ; each browser "
          "session watches (no workers of its own).", flush=True)
    print(f"Sign in: {server.sign_in_link()}", flush=True)
    print(f"  (valid {LINK_SECONDS // 3600} h, until this server stops; "
          + (f"or enter {' or '.join(tokens.names)} on the page)" if tokens else
             f"set {API_TOKEN_VAR} to sign in with a token instead)"), flush=True)
    server.serve(sock=sock)
    return 0
