"""``python -m stream_gateway``: one gateway instance until SIGTERM or Ctrl-C.

Reads the shared settings (:class:`agenttrader.settings.Settings`) and the gateway's own
(:class:`stream_gateway.config.GatewayConfig`), serves ``GET /healthz`` on ``PORT``, and runs
the gateway; on SIGTERM (Cloud Run's stop) or SIGINT it closes every stream, releases its
buckets (another instance takes them at once) and retires its session before exiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from agenttrader import logs
from agenttrader.deps import Deps
from agenttrader.settings import Settings
from stream_gateway import health
from stream_gateway.config import GatewayConfig
from stream_gateway.eligibility import RosterEligibility
from stream_gateway.gateway import Gateway
from stream_gateway.syncs import publisher_client


async def serve(gateway: Gateway, config: GatewayConfig, stop: asyncio.Event | None = None) -> None:
    """Run ``gateway`` and its health endpoint until ``stop`` is set (without one: until
    SIGTERM or SIGINT)."""
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    server = await health.start(gateway.health, config.health_host, config.port)
    try:
        await gateway.run(stop)
    finally:
        server.close()
        await server.wait_closed()


def main() -> int:
    try:
        settings = Settings.from_env()
        config = GatewayConfig.from_env(os.environ)
        settings.credentials_kek()  # it opens credentials: no KEK, no start (naming it)
    except ValueError as err:
        print(f"stream gateway: {err}", file=sys.stderr)
        return 2
    logs.configure(level=logging.getLevelName(settings.log_level))
    deps = Deps(settings, publisher=publisher_client())
    gateway = Gateway(deps, RosterEligibility(deps.firestore), config)
    try:
        asyncio.run(serve(gateway, config))
    finally:
        deps.publisher.stop()  # what is still batched goes out before the process ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
