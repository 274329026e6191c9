"""Serving the functions locally under functions-framework: in this process (threads, for
tests and benchmarks) or as ``functions-framework`` processes (``make run``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.background_server import BackgroundServer
from devtools.emulators import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "main.py"


@dataclass
class ServedFunction:
    """One function listening on loopback."""

    target: str
    port: int
    stop: Any
    process: subprocess.Popen[bytes] | None = None
    """The ``functions-framework`` process serving it now; ``None`` when served in this process."""
    restart: Callable[[], None] | None = None
    """Stop the process if it still runs, then start a new one on the same port (fault
    injection). Call it from a thread that outlives the process: the child is killed when the
    thread that started it exits (``PR_SET_PDEATHSIG``)."""

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
    background = BackgroundServer(server, f"fn-{target}").start()
    return ServedFunction(target, background.port, background.stop)


def serve_in_process(
    target: str, env: dict[str, str], port: int | None = None, log_dir: Path | None = None
) -> ServedFunction:
    """Run ``functions-framework --target`` from the repository root, as in production."""
    served = ServedFunction(target, port or free_port(), stop=None)

    def start() -> None:
        served.process = _start_process(target, env, served.port, log_dir)

    def stop() -> None:
        process = served.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def restart() -> None:
        stop()
        start()

    start()
    served.stop, served.restart = stop, restart
    return served


EXEC_DYING_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGKILL); "  # PR_SET_PDEATHSIG
    "os.execv(sys.argv[1], sys.argv[1:])"
)
"""The child sets its death signal itself, then becomes ``functions-framework``. Not a
``preexec_fn``: that forces ``fork()`` and Python code in the child, where the parent's live
gRPC clients' fork handlers killed about 1 child in 100 (SIGABRT, before the exec); without
one, subprocess spawns with ``vfork()`` and no handler runs."""


def spawn_dying_with_parent(
    argv: list[str], env: Mapping[str, str], log_path: Path | None
) -> subprocess.Popen[bytes]:
    """``argv`` in a session of its own (its group is signalled as one), killed with this
    process, in the repository root with ``env`` over this environment, its output appended
    to ``log_path`` (or dropped)."""
    log_file = log_path.open("ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-c", EXEC_DYING_WITH_PARENT, *argv],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if not isinstance(log_file, int):
            log_file.close()  # the child holds its own copy


def _start_process(
    target: str, env: dict[str, str], port: int, log_dir: Path | None
) -> subprocess.Popen[bytes]:
    """Start the process in a session of its own (its group is signalled as one) and wait
    until it answers."""
    executable = Path(sys.executable).with_name("functions-framework")
    argv = [str(executable), "--target", target, "--source", str(SOURCE)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    process = spawn_dying_with_parent(argv, env, log_dir / f"{target}.log" if log_dir else None)
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
    return process
