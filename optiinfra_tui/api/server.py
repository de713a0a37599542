"""uvicorn serving the API on a thread of the headless process, until `stop()`."""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from optiinfra_tui.access import Tokens
from optiinfra_tui.api.app import build_app
from optiinfra_tui.api.limits import TriggerLimit
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.api")


class ApiServer:
    """The API on `host:port`; the socket is bound in `start()`, so a taken port is a
    ConfigError there, before the workers start."""

    def __init__(self, rt: Runtime, host: str, port: int, tokens: Tokens,
                 limit: TriggerLimit | None = None) -> None:
        self.host, self.port = host, port
        config = uvicorn.Config(build_app(rt, tokens, limit), log_config=None, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=5,
                                server_header=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without
        # it every answer on a kept-alive connection waits out a delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host.strip("[]"), self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"--api-host {self.host} --api-port {self.port}: can't listen there "
                              f"({exc.strerror}). Choose a free port, or an address of this "
                              "host.") from None
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        log.info("HTTP API on http://%s:%d (docs at /docs)", self.host, self.port)

    def stop(self) -> None:
        """Finish the requests in flight (a few seconds at most), then close."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
