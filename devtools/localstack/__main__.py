"""``make run``: the whole local stack with demo tenants, shown live, until Ctrl-C.

    python -m devtools.localstack [--tick-seconds 60] [--project demo-agenttrader]
        [--tenants 6] [--simulator-port 0] [--in-process] [--no-view]

Starts, in order (:data:`STEPS`): the Firebase Auth emulator, the Pub/Sub and Firestore
emulators, the Alpaca simulator (in this process), the pipeline's functions with the topology,
bridges and scheduler (:class:`LocalStack`), the callables server, the admin console's page (and
an administrator on the Auth emulator), then the demo tenants: their onboarding documents, then
their keys, which fire their first syncs. Each step registers what
it started as a :class:`Component`; Ctrl-C or SIGTERM stops them in reverse order and exits 0.
A step that fails stops what the steps before it started and exits 1. Every process log goes to
``.local/run-<time>-…/``.

To add a step (say, a Vertex AI stand-in): write ``def start_x(run: Run) -> None`` that starts it,
puts its variables in ``run.env`` and calls ``run.add(Component(...))``, and list it in
:data:`STEPS` before the steps that need it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from agenttrader import logs, paths
from agenttrader.settings import DEFAULT_PROJECT
from devtools import emulators
from devtools.localstack import demo
from devtools.localstack.gateways import GatewayProcess, spawn
from devtools.localstack.stack import LocalStack
from devtools.localstack.trader import DemoTrader
from devtools.localstack.view import (
    ComponentRow,
    DeadLetterPeek,
    StackState,
    collect_state,
    eventarc_bridge_detail,
    gateway_detail,
    push_bridge_detail,
    render,
    render_line,
    screen,
    simulator_detail,
)
from devtools.simulator import AlpacaSimulator

CALLABLES = (
    "onboard_user",
    "generate_trading_signal",
    "migrate_legacy_data",
    "delete_account",
    "connect_alpaca",
    "disconnect_alpaca",
    "admin_status",
    "admin_tenants",
    "admin_tenant",
    "admin_dead_letters",
    "admin_replay_dead_letters",
    "admin_purge_dead_letters",
)
ADMIN_EMAIL = "admin@agenttrader.local"
"""The Auth emulator account ``make run`` creates with the ``admin`` claim (password printed)."""
REGION = "us-central1"
OAUTH_REDIRECT_URI = "http://localhost:5173/alpaca/callback"
"""The redirect URI of the simulator's OAuth app for a web client under development."""
REFRESH_SECONDS = 1.5
"""Redraw period of the full-screen view."""
LINE_SECONDS = 5.0
"""Period of the compact status line (no TTY, or ``--no-view``)."""


@dataclass(frozen=True)
class Component:
    """One thing this run started: a name, where it listens, how to stop it.

    ``stop`` is ``None`` for a part stopped with its owner (a function of the stack);
    ``detail`` reads live counters for the view.
    """

    name: str
    where: str
    stop: Callable[[], None] | None = None
    detail: Callable[[], str] | None = None


@dataclass
class Run:
    """The state of one ``make run``: its options, environment and components."""

    args: argparse.Namespace
    run_dir: Path
    say: Callable[[str], None]
    env: dict[str, str] = field(default_factory=dict)
    """What the functions get: emulator hosts, allowed Alpaca URLs, tunables."""
    components: list[Component] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    simulator: AlpacaSimulator | None = None
    stack: LocalStack | None = None
    tenants: list[demo.DemoTenant] = field(default_factory=list)
    db: Any = None
    auth: Any = None
    callables: Any = None

    @property
    def project(self) -> str:
        return str(self.args.project)

    def add(self, component: Component) -> None:
        self.components.append(component)

    def rows(self) -> list[ComponentRow]:
        return [
            ComponentRow(c.name, c.where, c.detail() if c.detail else "") for c in self.components
        ]

    def stop(self) -> None:
        """Stop every component, last started first; one failing stop does not stop the rest."""
        while self.components:
            component = self.components.pop()
            if component.stop is None:
                continue
            try:
                component.stop()
            except Exception as err:  # noqa: BLE001 - report, and stop the others anyway
                self.say(f"  could not stop {component.name}: {type(err).__name__}: {err}")


# --- the steps ----------------------------------------------------------------------------


def start_emulators(run: Run) -> None:
    exits = contextlib.ExitStack()
    hosts = exits.enter_context(
        emulators.running(
            emulators.PUBSUB, emulators.FIRESTORE, project=run.project, log_dir=run.run_dir
        )
    )
    run.env.update(hosts)
    run.env["GOOGLE_CLOUD_PROJECT"] = run.project
    # This process's own clients (seeding, the view, the bridges) read the same switches.
    os.environ.update(run.env)
    from google.cloud import firestore

    run.db = firestore.Client(project=run.project)
    # The emulator's first request takes seconds (JIT): pay it while the functions start.
    threading.Thread(
        target=_first_read, args=(run.db,), name="firestore-warmup", daemon=True
    ).start()
    run.add(Component("Pub/Sub emulator", hosts[emulators.PUBSUB.env_var]))
    # Started together, stopped together: one stop for both.
    run.add(Component("Firestore emulator", hosts[emulators.FIRESTORE.env_var], exits.close))


def _first_read(db: Any) -> None:
    with contextlib.suppress(Exception):
        db.document(paths.LAST_PULSE_DOC).get(timeout=60)


def quiet_grpc() -> None:
    """gRPC's C core notes every fork while its threads run (we start processes): keep the
    terminal for what matters."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def spawn_auth_emulator(run: Run) -> None:
    """Spawn the Firebase Auth emulator now; it compiles its schema while the rest starts."""
    from devtools import auth_emulator

    quiet_grpc()
    # The port is fixed now, so the address shown stays right if it must be started again.
    emulator = auth_emulator.spawn(run.project, emulators.free_port())
    run.auth = emulator
    run.add(Component("Auth emulator", emulator.host_port, emulator.stop))


def start_callables(run: Run) -> None:
    """The callables at ``/{project}/{region}/{name}``, as ``connectFunctionsEmulator``
    calls them, verifying the Auth emulator's ID tokens."""
    import main
    from devtools.callable_server import CallablesServer

    assert run.auth is not None
    run.auth.wait_ready()
    run.env["FIREBASE_AUTH_EMULATOR_HOST"] = run.auth.host_port
    os.environ["FIREBASE_AUTH_EMULATOR_HOST"] = run.auth.host_port
    functions = {name: getattr(main, name) for name in CALLABLES}
    server = CallablesServer(functions, project=run.project, region=REGION).start()
    run.callables = server
    run.add(
        Component(
            "callables",
            server.url(run.project, REGION, "{name}"),
            server.stop,
            detail=lambda: (
                "Gemini"
                if os.environ.get("VERTEX_AI_BASE_URL")
                else "offline: local heuristic signals"
            ),
        )
    )


def start_console(run: Run) -> None:
    """The admin console's page, talking to the Auth emulator and the callables server, and
    an administrator to sign in with (a fresh password each run, printed here)."""
    import secrets

    from devtools.console_server import ConsoleServer, ensure_built, local_config

    assert run.auth is not None and run.callables is not None
    config = local_config(run.project, REGION, run.auth.host_port, run.callables.host_port)
    server = ConsoleServer(ensure_built(), config).start()
    password = secrets.token_urlsafe(12)
    client = run.auth.client()
    admin = client.sign_up(ADMIN_EMAIL, password)
    client.set_custom_claims(admin.uid, {"admin": True})
    run.add(Component("admin console", server.url, server.stop, detail=lambda: ADMIN_EMAIL))
    run.say(f"admin console: {server.url}")
    run.say(
        f"  sign in as {ADMIN_EMAIL} / {password} (an Auth emulator account with the admin claim)"
    )


def start_simulator(run: Run) -> None:
    sim = AlpacaSimulator(port=run.args.simulator_port).start()
    run.simulator = sim
    app = sim.add_oauth_app([OAUTH_REDIRECT_URI])
    alpaca = {
        "ALPACA_ALLOWED_BASE_URLS": sim.base_url,
        "ALPACA_OAUTH_CLIENT_ID": app.client_id,
        "ALPACA_OAUTH_CLIENT_SECRET": app.client_secret,
        "ALPACA_OAUTH_BASE_URL": sim.base_url,
    }
    run.env.update(alpaca)
    os.environ.update(alpaca)  # connect_alpaca runs in this process, with the callables
    run.add(
        Component("Alpaca simulator", sim.base_url, sim.stop, detail=lambda: simulator_detail(sim))
    )
    run.add(
        Component(
            "Alpaca OAuth app",
            f"{sim.base_url}/oauth/authorize?response_type=code&client_id={app.client_id}"
            f"&redirect_uri={OAUTH_REDIRECT_URI}",
        )
    )


def start_stack(run: Run) -> None:
    run.env.setdefault("PULSE_ROLLUP_DELAY_SECONDS", "1")
    stack = LocalStack(
        run.project,
        run.env,
        in_process=run.args.in_process,
        tick_seconds=run.args.tick_seconds,
        log_dir=run.run_dir,
    )
    stack.start()  # stops what it started if it fails
    run.stack = stack
    how = "in this process" if run.args.in_process else "functions-framework processes"
    run.add(Component("local stack", f"{len(stack.functions)} functions, {how}", stack.stop))
    for target, served in stack.functions.items():
        run.add(Component(f"fn {target}", served.url))
    push, eventarc, ticker = stack.push_bridge, stack.eventarc_bridge, stack.ticker
    assert push is not None and eventarc is not None and ticker is not None
    run.add(
        Component(
            "push bridge",
            "user-sync-worker → sync_user",
            detail=lambda: push_bridge_detail(push),
        )
    )
    for bridge, what in (
        (eventarc, "secrets/alpaca writes → on_alpaca_secret_written"),
        (stack.config_bridge, "config/alpaca writes → on_alpaca_config_written"),
        (stack.kill_switch_bridge, "status/trading writes → on_trading_status_written"),
    ):
        assert bridge is not None
        run.add(
            Component(
                "Eventarc bridge", what, detail=functools.partial(eventarc_bridge_detail, bridge)
            )
        )
    run.add(
        Component(
            "scheduler",
            f"sync-tick every {run.args.tick_seconds:g} s",
            detail=lambda: f"ticks {ticker.ticks}",
        )
    )


def start_gateways(run: Run) -> None:
    """``python -m stream_gateway`` instances, as production runs them: they share the buckets
    of tenants through their Firestore leases (the view shows who streams what)."""
    for number in range(1, run.args.gateways + 1):
        gateway = spawn(run.env, log_path=run.run_dir / f"stream-gateway-{number}.log")
        run.add(
            Component(
                f"stream gateway {number}",
                f"http://127.0.0.1:{gateway.port}/healthz",
                gateway.stop,
                detail=functools.partial(_gateway_detail, gateway),
            )
        )


def _gateway_detail(gateway: GatewayProcess) -> str:
    try:
        return gateway_detail(gateway.health(timeout=0.5))
    except OSError:
        return "not answering" if gateway.running else "stopped"


def start_trader(run: Run) -> None:
    """Now and then, the first healthy demo tenant's own trading bot places an order: its
    fills come through the tenant's stream into the view's ORDERS."""
    assert run.simulator is not None
    healthy = [t for t in run.tenants if t.spec.scenario.kind == "normal" and t.spec.enabled]
    if not healthy or run.args.trade_seconds <= 0:
        return
    trader = DemoTrader(run.simulator, healthy[0].key_id, run.args.trade_seconds).start()
    run.add(
        Component(
            "demo trader",
            f"{healthy[0].uid}: an order every {run.args.trade_seconds:g} s",
            trader.stop,
            detail=lambda: f"orders {trader.orders}",
        )
    )


def add_demo_tenants(run: Run) -> None:
    """As real users arrive: onboarding writes their documents (keys not configured), then
    each writes its keys, which fires ``on_alpaca_secret_written`` and the first sync."""
    assert run.simulator is not None
    run.tenants = demo.create_tenants(run.simulator, demo.demo_specs(run.args.tenants))
    demo.seed_structure(run.db, run.tenants)
    demo.connect_keys(run.db, run.tenants, run.simulator.base_url)


STEPS: tuple[tuple[str, Callable[[Run], None]], ...] = (
    ("the Firebase Auth emulator", spawn_auth_emulator),
    ("the Pub/Sub and Firestore emulators", start_emulators),
    ("the Alpaca simulator", start_simulator),
    ("the functions, topology, bridges and scheduler", start_stack),
    ("the callables and the Auth emulator", start_callables),
    ("the admin console", start_console),
    ("the stream gateways", start_gateways),
    ("the demo tenants", add_demo_tenants),
    ("the demo trader", start_trader),
)


# --- watching -----------------------------------------------------------------------------


def _relative(path: Path | str) -> str:
    """``path`` relative to the working directory when under it (symlinks kept as named)."""
    with contextlib.suppress(ValueError):
        return str(Path(path).absolute().relative_to(Path.cwd()))
    return str(path)


def hints(run: Run) -> tuple[str, ...]:
    python = _relative(sys.executable)
    return (
        f"Add a tenant while it runs: {python} -m devtools.localstack.demo add alice"
        " [--scenario flaky|bad_keys|latency|…] — it shows up here and syncs at once",
        f"Trade-update streams: {run.args.gateways} stream gateways share the tenants (their"
        " /healthz above); the demo trader's fills show in ORDERS a fraction of a second after"
        " the fill, and a streaming tenant is polled one tick in RECONCILE_EVERY_TICKS",
        f"Logs: {_relative(run.run_dir)}/   Ctrl-C stops everything",
    )


def watch(run: Run, interactive: bool, out: IO[str]) -> None:
    """Show the stack until interrupted: redraw the screen, or print a line now and then."""
    peek = DeadLetterPeek(run.project)
    run_hints = hints(run)

    def frame() -> StackState:
        return collect_state(
            run.db,
            project=run.project,
            started_at=run.started_at,
            components=run.rows(),
            dead_letters=peek.depth(),
            hints=run_hints,
        )

    try:
        if interactive:
            out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear once
            while True:
                out.write(screen(render(frame(), color=True)))
                out.flush()
                time.sleep(REFRESH_SECONDS)
        else:
            out.write(render(frame()))
            out.flush()
            while True:
                time.sleep(LINE_SECONDS)
                print(render_line(frame()), file=out, flush=True)
    finally:
        # The last frame stays on screen (or in the log); a closed pipe is no reason to stop.
        with contextlib.suppress(Exception):
            out.write("\x1b[?25h\n" if interactive else "\n" + render(frame()))
            out.flush()
        peek.close()


# --- stopping what is left ----------------------------------------------------------------


def _child_pids() -> list[int]:
    """Live child processes of this process (Linux ``/proc``; elsewhere none are found)."""
    me, pids = os.getpid(), []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(me) and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def stop_leftovers(say: Callable[[str], None], grace: float = 5.0) -> None:
    """Last guard: stop (with their process groups) children that outlived their component,
    such as a process whose start was interrupted before it was registered."""
    pids = _child_pids()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            say(f"  stopping leftover process {pid}")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            for pid in list(pids):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            pids = [pid for pid in pids if pid in _child_pids()]
            time.sleep(0.1)
        if not pids:
            return


# --- main ---------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.localstack",
        description="Run the local stack with demo tenants until Ctrl-C.",
    )
    parser.add_argument(
        "--tick-seconds", type=float, default=60.0, help="scheduler period (default 60)"
    )
    parser.add_argument("--project", default=DEFAULT_PROJECT, help="emulator project id")
    parser.add_argument("--tenants", type=int, default=len(demo.DEMO_SPECS), help="demo tenants")
    parser.add_argument(
        "--simulator-port", type=int, default=0, help="Alpaca simulator port (0: any free one)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="serve the functions from this process instead of functions-framework processes",
    )
    parser.add_argument(
        "--no-view", action="store_true", help="print a status line every few seconds instead"
    )
    parser.add_argument(
        "--gateways", type=int, default=2, help="stream gateway instances (default 2)"
    )
    parser.add_argument(
        "--trade-seconds",
        type=float,
        default=20.0,
        help="the demo trader's order period (0: no demo trader)",
    )
    args = parser.parse_args(argv)
    if args.tick_seconds <= 0:
        parser.error("--tick-seconds must be positive")
    if args.tenants < 0:
        parser.error("--tenants must not be negative")
    if args.gateways < 0:
        parser.error("--gateways must not be negative")
    return args


def _interrupt(signum: int, frame: Any) -> None:
    """First Ctrl-C or SIGTERM: unwind to the stopping code; later ones are ignored, since
    stopping must finish (an interrupted stop would leave processes behind)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def new_run_dir() -> Path:
    demo.RUNS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"run-{stamp}-", dir=demo.RUNS_DIR))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    out = sys.stdout
    interactive = out.isatty() and not args.no_view

    def say(message: str) -> None:
        with contextlib.suppress(OSError):  # a closed pipe must not keep us from stopping
            print(message, file=out, flush=True)

    # Installed explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    run = Run(args, new_run_dir(), say)
    log_file = (run.run_dir / "localstack.log").open("a", buffering=1)
    logs.configure(stream=log_file)
    logging.captureWarnings(True)
    env_file: Path | None = None
    status = 0
    doing = "start the local stack"
    try:
        say(f"Starting the local stack, project {run.project}; logs in {_relative(run.run_dir)}/")
        for step, start in STEPS:
            doing = f"start {step}"
            started = time.monotonic()
            start(run)
            say(f"  started {step} ({time.monotonic() - started:.1f} s)")
        doing = "show the local stack"
        assert run.simulator is not None
        env_file = demo.write_env_file(
            run.run_dir,
            {**run.env, demo.SIMULATOR_URL_VAR: run.simulator.base_url},
        )
        watch(run, interactive, out)
    except KeyboardInterrupt:
        pass
    except Exception as err:  # noqa: BLE001 - any failure: say what, then stop everything
        say(f"error: could not {doing}: {type(err).__name__}: {err}")
        say(f"  see the logs in {_relative(run.run_dir)}/")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("Stopping…")
        if env_file is not None:
            env_file.unlink(missing_ok=True)
        if run.db is not None:
            with contextlib.suppress(Exception):
                run.db.close()
        run.stop()
        stop_leftovers(say)
        say("Stopped everything.")
        log_file.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
