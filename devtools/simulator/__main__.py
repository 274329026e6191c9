"""Run the simulator standalone: ``python -m devtools.simulator --port 8765 [--demo]``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from devtools.simulator.server import AlpacaSimulator
from devtools.simulator.tenants import Scenario

# Fixed demo tenants so a local stack can be wired up without the admin API. Their secrets are
# throwaway constants derived from the key id (secret = key id + "SECRET", padded to 40 chars);
# they are never printed.
_DEMO_SCENARIOS: tuple[tuple[str, Scenario], ...] = (
    ("PKDEMONORMAL00000001", Scenario(kind="normal")),
    ("PKDEMOLATENCY0000001", Scenario(kind="latency", latency_ms=750)),
    ("PKDEMOBADKEYS0000001", Scenario(kind="bad_keys")),
    ("PKDEMOFORBIDDEN00001", Scenario(kind="forbidden")),
    ("PKDEMORATELIMITED001", Scenario(kind="rate_limited")),
    ("PKDEMOSERVERERROR001", Scenario(kind="server_error", status=503)),
    ("PKDEMOTIMEOUT0000001", Scenario(kind="timeout", hang_seconds=30)),
    ("PKDEMOFLAKY000000001", Scenario(kind="flaky", failure_rate=0.3)),
    ("PKDEMOFAILTHENOK0001", Scenario(kind="fail_then_ok", fail_count=2, fail_status=429)),
)


def demo_secret(key_id: str) -> str:
    """The fixed secret of a demo tenant."""
    return (key_id + "SECRET").ljust(40, "0")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.simulator",
        description="Alpaca paper Trading API v2 simulator (admin API under /_sim/).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--default-latency-ms",
        type=float,
        default=0.0,
        help="latency for every tenant whose scenario does not set latency_ms",
    )
    parser.add_argument("--demo", action="store_true", help="create fixed demo tenants")
    parser.add_argument(
        "--access-log", action="store_true", help="log method, route and status per request"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.access_log:
        logging.getLogger("devtools.simulator").setLevel(logging.DEBUG)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C or a supervisor: stop cleanly
        signal.signal(signum, lambda _signum, _frame: stop.set())
    sim = AlpacaSimulator(args.host, args.port, default_latency_ms=args.default_latency_ms)
    try:
        sim.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        if args.demo:
            for seed, (key_id, scenario) in enumerate(_DEMO_SCENARIOS):
                sim.add_tenant(scenario, key_id=key_id, secret_key=demo_secret(key_id), seed=seed)
                print(f"demo tenant {key_id}: {scenario.kind}")
        print(f"Alpaca simulator listening on {sim.base_url}", flush=True)
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
