"""The admin console's page on loopback, as Firebase Hosting serves it in production.

It serves ``console/web/dist`` (built by ``node console/web/build.mjs``; ``make setup`` does it)
and, at ``/console-config.json``, where the page finds the project, the region and the
emulators (the Auth emulator and the callables server), so the official Firebase JS SDK in the
page talks to the local stack exactly as it talks to production.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Mapping
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devtools.auth_emulator import API_KEY
from devtools.background_server import BackgroundServer

WEB = Path(__file__).resolve().parents[1] / "console" / "web"
DIST = WEB / "dist"
CONFIG_PATH = "/console-config.json"


class ConsoleUnavailable(RuntimeError):
    """The page is not built and cannot be: Node.js or its packages are missing."""


def _newest(paths: list[Path]) -> float:
    return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)


def ensure_built(web: Path = WEB) -> Path:
    """``dist/`` of ``web``, built first when missing or older than its sources."""
    dist = web / "dist"
    sources = [*sorted((web / "src").glob("*")), web / "build.mjs", web / "package-lock.json"]
    if (dist / "index.html").exists() and _newest(sorted(dist.glob("*"))) >= _newest(sources):
        return dist
    node = shutil.which("node")
    if node is None:
        raise ConsoleUnavailable("`node` is not on PATH: install Node.js 20 or later")
    if not (web / "node_modules" / "esbuild").is_dir():
        raise ConsoleUnavailable(
            f"{web / 'node_modules'} is missing: run `make setup` (npm ci in console/web)"
        )
    result = subprocess.run(
        [node, "build.mjs"], cwd=web, capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise ConsoleUnavailable(f"building the console failed: {result.stderr.strip()[-500:]}")
    return dist


def local_config(
    project: str, region: str, auth_host_port: str, functions_host_port: str
) -> dict[str, Any]:
    """What the page reads at ``/console-config.json`` on the local stack."""
    return {
        "projectId": project,
        "region": region,
        "apiKey": API_KEY,
        "authDomain": f"{project}.firebaseapp.com",
        "emulators": {"auth": f"http://{auth_host_port}", "functions": functions_host_port},
    }


def _handler(directory: Path, config: bytes) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == CONFIG_PATH:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(config)))
                self.end_headers()
                self.wfile.write(config)
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the local stack's terminal shows its own view."""

    return functools.partial(Handler, directory=str(directory))  # type: ignore[return-value]


class ConsoleServer(BackgroundServer):
    """``dist`` and the page's configuration on a loopback port."""

    def __init__(self, dist: Path, config: Mapping[str, Any], *, port: int = 0) -> None:
        body = json.dumps(dict(config)).encode()
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(dist, body))
        server.daemon_threads = True
        super().__init__(server, "console")

    @property
    def url(self) -> str:
        return f"http://{self.host_port}/"
