"""A push endpoint on loopback for push-bridge tests: every POST's JSON body goes to a handler
that answers with an HTTP status."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.background_server import BackgroundServer


class Server(ThreadingHTTPServer):
    request_queue_size = 128
    """Every delivery thread may connect at once (the default backlog of 5 resets some)."""
    daemon_threads = True


def serve_push(handle: Callable[[dict[str, Any]], int]) -> BackgroundServer:
    """Start serving; the caller stops the returned server (or uses it with ``with``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(handle(body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return BackgroundServer(Server(("127.0.0.1", 0), Handler), "push-endpoint")
