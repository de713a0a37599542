"""A real local HTTP server that takes webhook POSTs (JSON or Slack's), records them, and can
refuse or hang on command: the alerts' receiving end in the tests."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from local_server import LocalServer


@dataclass(frozen=True)
class Post:
    path: str
    body: dict
    content_type: str


class WebhookReceiver(LocalServer):
    """`url(path)` to give an alert; `posts(path)` what arrived there, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[Post] = []
        self._statuses: list[int] = []  # answered to the next requests, then 200
        self.hang = threading.Event()  # set: requests wait until `release` is set
        self.release = threading.Event()
        self.arrived = threading.Event()  # a request reached the handler

    def start(self) -> WebhookReceiver:
        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), _Handler), "webhook-receiver")
        return self

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        super().__exit__(*exc)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *statuses: int) -> None:
        """Answer these statuses to the next requests (taken or not), then 200 again."""
        with self._lock:
            self._statuses = list(statuses)

    def posts(self, path: str | None = None) -> list[Post]:
        """Requests answered 2xx, on `path` (all paths if None)."""
        with self._lock:
            return [p for p in self._posts if path is None or p.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        self.arrived.set()
        if self.hang.is_set():
            self.release.wait(60)
        with self._lock:
            status = self._statuses.pop(0) if self._statuses else 200
            if status < 300:
                self._posts.append(Post(handler.path, json.loads(raw),
                                        handler.headers.get("Content-Type", "")))
        handler.send_response(status)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.fake._handle(self)  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        pass
