"""Stream gateways for the local stack, the tests, the benchmarks and the chaos run.

:class:`GatewayThread` runs one in this process (its own event loop on a thread: tests reach
into it); :func:`spawn` starts ``python -m stream_gateway`` as production runs it, in a
process group of its own that dies with this process (what ``make run`` starts, and what the
chaos run SIGKILLs). Both serve ``GET /healthz`` on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

from agenttrader.deps import Deps
from devtools.emulators import free_port
from devtools.localstack.functions import spawn_dying_with_parent
from stream_gateway.__main__ import serve
from stream_gateway.config import GatewayConfig
from stream_gateway.eligibility import RosterEligibility
from stream_gateway.gateway import Eligibility, Gateway

READY_SECONDS = 60.0


def health(port: int, timeout: float = 2.0) -> dict[str, Any]:
    """What ``GET /healthz`` of the gateway on ``port`` answers."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as reply:
        data: dict[str, Any] = json.loads(reply.read())
        return data


class GatewayThread:
    """A gateway served on a thread of this process."""

    def __init__(
        self,
        deps: Deps,
        config: GatewayConfig | None = None,
        *,
        eligibility: Eligibility | None = None,
        **options: Any,
    ) -> None:
        base = config or GatewayConfig()
        self.config = replace(base, port=free_port(), health_host="127.0.0.1")
        self.gateway = Gateway(
            deps, eligibility or RosterEligibility(deps.firestore), self.config, **options
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream-gateway", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await serve(self.gateway, self.config, self._stop)

        try:
            asyncio.run(main())
        except BaseException as err:  # noqa: BLE001 - kept for the test to see
            self.error = err
            self._ready.set()

    def start(self) -> Self:
        """Start, and wait until the health endpoint answers."""
        self._thread.start()
        self._ready.wait(10)
        deadline = time.monotonic() + READY_SECONDS
        while self.error is None and time.monotonic() < deadline:
            try:
                self.health()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the gateway did not start: {self.error!r}")

    def stop(self, timeout: float = 30.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the gateway's loop and return its result (test hooks)."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(_call(fn, *args), self._loop)
        return future.result(10)

    def health(self) -> dict[str, Any]:
        return health(self.config.port)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


@dataclass
class GatewayProcess:
    """``python -m stream_gateway`` running in a process group of its own."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    started_at: float = field(default_factory=time.monotonic)

    def health(self, timeout: float = 2.0) -> dict[str, Any]:
        return health(self.port, timeout)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no close handshake, no release (the crash the leases are for)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (streams closed, buckets released), then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def spawn(
    env: dict[str, str], *, port: int | None = None, log_path: Path | None = None
) -> GatewayProcess:
    """Start a gateway process with ``env`` and wait until its health endpoint answers."""
    port = port or free_port()
    own = {**env, "PORT": str(port), "STREAM_HEALTH_HOST": "127.0.0.1"}
    process = spawn_dying_with_parent([sys.executable, "-m", "stream_gateway"], own, log_path)
    gateway = GatewayProcess(port, process, log_path)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"python -m stream_gateway exited ({process.returncode})")
        try:
            gateway.health(timeout=1)
            return gateway
        except OSError:
            time.sleep(0.2)
    gateway.stop()
    raise RuntimeError("python -m stream_gateway did not answer on /healthz in time")
