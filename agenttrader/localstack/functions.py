"""Serving the functions locally under functions-framework: in this process (threads, for
tests and benchmarks) or as ``functions-framework`` processes (``make run``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agenttrader.emulators import die_with_parent, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "main.py"


@dataclass
class ServedFunction:
    """One function listening on loopback."""

    target: str
    port: int
    stop: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def serve_in_thread(target: str, port: int | None = None) -> ServedFunction:
    """Serve ``target`` from ``main.py`` in this process, with a threaded WSGI server."""
    import functions_framework
    from werkzeug.serving import make_server

    app = functions_framework.create_app(target=target, source=str(SOURCE))  # type: ignore[no-untyped-call]
    server = make_server("127.0.0.1", port or free_port(), app, threaded=True)
    server.socket.listen(1024)  # a deeper backlog than werkzeug's default, for bursts
    thread = threading.Thread(target=server.serve_forever, name=f"fn-{target}", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return ServedFunction(target, server.server_port, stop)


def serve_in_process(
    target: str, env: dict[str, str], port: int | None = None, log_dir: Path | None = None
) -> ServedFunction:
    """Run ``functions-framework --target`` from the repository root, as in production."""
    port = port or free_port()
    executable = Path(sys.executable).with_name("functions-framework")
    log_file = (log_dir / f"{target}.log").open("ab") if log_dir else subprocess.DEVNULL
    process = subprocess.Popen(
        [
            str(executable),
            "--target",
            target,
            "--source",
            str(SOURCE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets a signal in the child
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"functions-framework --target {target} exited ({process.returncode})"
            )
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except urllib.error.HTTPError:
            break  # it answers: a cloudevent function refuses a bare GET
        except OSError:
            time.sleep(0.2)

    def stop() -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    return ServedFunction(target, port, stop)
