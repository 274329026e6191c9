"""``GET /healthz`` on ``PORT``: what this instance streams, as JSON.

A tiny HTTP/1.1 server on the gateway's own event loop: it answers only while the loop runs,
which is what a liveness probe should learn (a wedged loop stops answering; Firestore being
down does not make the instance unhealthy, it shows in the body). Anything but
``GET /healthz`` is 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

_MAX_HEADER_LINES = 100
_READ_SECONDS = 5.0


async def start(report: Callable[[], dict[str, Any]], host: str, port: int) -> asyncio.Server:
    """Serve ``report()`` at ``/healthz``; returns the started server."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_SECONDS):
                request = (await reader.readline()).decode("latin-1").split()
                for _ in range(_MAX_HEADER_LINES):
                    if (await reader.readline()) in (b"\r\n", b"\n", b""):
                        break
            path = request[1].split("?", 1)[0] if len(request) >= 2 else ""
            if request[:1] == ["GET"] and path == "/healthz":
                status, body = "200 OK", json.dumps(report()).encode()
            else:
                status, body = "404 Not Found", b'{"error":"not found"}'
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
