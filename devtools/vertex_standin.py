"""A local stand-in for Vertex AI's REST ``generateContent``, so the real google-genai client
code runs in tests and ``make run`` without a cloud project.

It answers ``POST /{version}/projects/{p}/locations/{l}/publishers/google/models/{m}``
``:generateContent`` (the URL google-genai builds in Vertex mode when ``VERTEX_AI_BASE_URL``
replaces the endpoint)
with one candidate whose text is a valid trading signal derived from the prompt, token usage,
``finishReason: STOP`` and ``modelVersion``. Tests script failures (HTTP 500 / 429, a hang past
the client's timeout, text that is not JSON, an early stop) and inspect every request received.

Run alone: ``python -m devtools.vertex_standin --port 8089`` then
``VERTEX_AI_BASE_URL=http://127.0.0.1:8089``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devtools.background_server import BackgroundServer

ROUTE = re.compile(
    r"^/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/google/models/(?P<model>[^/:]+):generateContent$"
)
_TICKER = re.compile(r"[A-Z0-9./]{1,15}")
MAX_BODY_BYTES = 1024 * 1024


class Mode(StrEnum):
    """How the stand-in answers a request."""

    OK = "ok"
    HTTP_500 = "http_500"
    HTTP_429 = "http_429"
    HTTP_400 = "http_400"
    TIMEOUT = "timeout"
    """Hold the request open (up to ``hang_seconds``) so the client times out."""
    INVALID_JSON = "invalid_json"
    """A 200 whose candidate text is not JSON."""
    MAX_TOKENS = "max_tokens"
    """A 200 cut short: ``finishReason: MAX_TOKENS``."""


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    project: str
    location: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        parts = self.body.get("contents", [{}])[0].get("parts", [])
        return "".join(part.get("text", "") for part in parts)

    @property
    def generation_config(self) -> dict[str, Any]:
        config = self.body.get("generationConfig", {})
        return config if isinstance(config, dict) else {}


def signal_for(prompt: str) -> dict[str, Any]:
    """A deterministic, schema-valid signal: HOLD the first position the prompt lists (the
    first of ``positions`` in the prompt's JSON data line)."""
    symbol = next(filter(None, map(_first_symbol, prompt.splitlines())), "")
    return {
        "action": "HOLD",
        "symbol": symbol,
        "confidence": 0.55,
        "rationale": f"Stand-in answer: hold {symbol or 'the portfolio'} (no model was asked).",
        "risks": ["This answer comes from the local Vertex AI stand-in."],
    }


def _first_symbol(line: str) -> str | None:
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    positions = data.get("positions") if isinstance(data, dict) else None
    first = positions[0] if isinstance(positions, list) and positions else None
    symbol = first.get("symbol") if isinstance(first, dict) else None
    return symbol if isinstance(symbol, str) and _TICKER.fullmatch(symbol) else None


@dataclass
class _State:
    default: Mode = Mode.OK
    scripted: deque[Mode] = field(default_factory=deque)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class VertexStandIn(BackgroundServer):
    """The server; ``with VertexStandIn() as standin:`` starts it on a free loopback port."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", hang_seconds: float = 10.0) -> None:
        self.hang_seconds = hang_seconds
        self._state = _State()
        self._stopping = threading.Event()
        server = ThreadingHTTPServer((host, port), self._handler_class())
        server.daemon_threads = True
        super().__init__(server, "vertex-standin")

    @property
    def base_url(self) -> str:
        """The value for ``VERTEX_AI_BASE_URL``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def set_mode(self, mode: Mode) -> None:
        """Answer every following request this way (until changed)."""
        with self._state.lock:
            self._state.default = mode

    def fail_next(self, mode: Mode, times: int = 1) -> None:
        """Answer the next ``times`` requests this way, then go back to the default mode."""
        with self._state.lock:
            self._state.scripted.extend([mode] * times)

    def reset(self) -> None:
        with self._state.lock:
            self._state.default = Mode.OK
            self._state.scripted.clear()
            self._state.requests.clear()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the command-line mode)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def _before_stop(self) -> None:
        self._stopping.set()  # releases requests held open by Mode.TIMEOUT

    def _next_mode(self, recorded: RecordedRequest) -> Mode:
        with self._state.lock:
            self._state.requests.append(recorded)
            return self._state.scripted.popleft() if self._state.scripted else self._state.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read :attr:`VertexStandIn.requests` instead."""

            def do_POST(self) -> None:
                route = ROUTE.match(self.path.split("?", 1)[0])
                length = int(self.headers.get("Content-Length") or 0)
                if route is None or length > MAX_BODY_BYTES:
                    self._send(404, _error(404, "NOT_FOUND", "no such method"))
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send(400, _error(400, "INVALID_ARGUMENT", "invalid JSON payload"))
                    return
                recorded = RecordedRequest(
                    path=self.path,
                    project=route["project"],
                    location=route["location"],
                    model=route["model"],
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body if isinstance(body, dict) else {},
                )
                self._answer(standin._next_mode(recorded), recorded)

            def _answer(self, mode: Mode, recorded: RecordedRequest) -> None:
                if mode is Mode.TIMEOUT:
                    standin._stopping.wait(standin.hang_seconds)
                    self.close_connection = True
                    return
                errors = {
                    Mode.HTTP_500: (500, "INTERNAL", "stand-in internal error"),
                    Mode.HTTP_429: (429, "RESOURCE_EXHAUSTED", "stand-in quota exceeded"),
                    Mode.HTTP_400: (400, "INVALID_ARGUMENT", "stand-in refused the request"),
                }
                if mode in errors:
                    code, status, message = errors[mode]
                    self._send(code, _error(code, status, message))
                    return
                text = json.dumps(signal_for(recorded.prompt))
                finish = "STOP"
                if mode is Mode.INVALID_JSON:
                    text = "Sure! Here is my recommendation: BUY everything."
                elif mode is Mode.MAX_TOKENS:
                    text, finish = text[: len(text) // 2], "MAX_TOKENS"
                self._send(200, _generate_content_response(recorded, text, finish))

            def _send(self, code: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler


def _error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def _generate_content_response(recorded: RecordedRequest, text: str, finish: str) -> dict[str, Any]:
    prompt_tokens = max(1, len(recorded.prompt) // 4)
    candidate_tokens = max(1, len(text) // 4)
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": candidate_tokens,
            "totalTokenCount": prompt_tokens + candidate_tokens,
        },
        "modelVersion": f"{recorded.model}-standin",
        "responseId": f"standin-{len(recorded.prompt)}",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    standin = VertexStandIn(port=args.port)
    print(f"VERTEX_AI_BASE_URL={standin.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        standin.serve_forever()


if __name__ == "__main__":
    main()
