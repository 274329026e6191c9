"""Demo tenants of ``make run``, and a command that adds one while the stack runs.

Every demo tenant is one Alpaca simulator account with its own behaviour (healthy, slow,
flaky, bad keys, kill-switch off). Seeding follows the product: :func:`seed_structure` writes
what onboarding writes (keys not yet configured) before the stack starts; :func:`connect_keys`
writes each tenant's keys once the stack listens, so the Eventarc bridge fires
``on_alpaca_secret_written`` and the first sync runs as it would for a real user.

Add a tenant to a running stack (its scenario on the simulator, its keys in Firestore)::

    .venv/bin/python -m devtools.localstack.demo add alice --scenario flaky --failure-rate 0.5

Key values are generated, stored and never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenttrader import paths
from devtools.localstack.seed import seed_user, store_keys
from devtools.simulator import SCENARIO_KINDS, AlpacaSimulator, Scenario

if TYPE_CHECKING:
    from google.cloud import firestore

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR = REPO_ROOT / ".local"
ENV_FILE = "stack.env"
"""In a run directory while the stack runs: where its emulators and simulator listen."""
SIMULATOR_URL_VAR = "ALPACA_SIMULATOR_URL"
SCENARIO_FIELD = "demo_scenario"
"""Field of ``users/{uid}`` naming a demo tenant's simulator behaviour, for the view."""


@dataclass(frozen=True)
class DemoSpec:
    """One demo tenant: its uid, how its Alpaca account behaves, its kill-switch."""

    uid: str
    label: str
    scenario: Scenario
    enabled: bool = True


DEMO_SPECS: tuple[DemoSpec, ...] = (
    DemoSpec("demo-healthy-1", "healthy", Scenario(kind="normal")),
    DemoSpec("demo-bad-keys", "bad keys (401)", Scenario(kind="bad_keys")),
    DemoSpec("demo-slow", "slow (800 ms)", Scenario(kind="latency", latency_ms=800)),
    DemoSpec("demo-flaky", "flaky (30% 503)", Scenario(kind="flaky", failure_rate=0.3)),
    DemoSpec("demo-trading-off", "healthy, kill-switch off", Scenario(kind="normal"), False),
    DemoSpec("demo-healthy-2", "healthy", Scenario(kind="normal")),
)
"""In order of interest: ``--tenants N`` takes the first N (more than these: extra healthy)."""


def demo_specs(count: int) -> list[DemoSpec]:
    specs = list(DEMO_SPECS[:count])
    for number in range(3, 3 + count - len(specs)):
        specs.append(DemoSpec(f"demo-healthy-{number}", "healthy", Scenario(kind="normal")))
    return specs


@dataclass(frozen=True)
class DemoTenant:
    """A demo tenant with its simulator account; ``repr`` never shows the keys."""

    spec: DemoSpec
    key_id: str = field(repr=False)
    secret_key: str = field(repr=False)

    @property
    def uid(self) -> str:
        return self.spec.uid


def create_tenants(sim: AlpacaSimulator, specs: Sequence[DemoSpec]) -> list[DemoTenant]:
    """One simulator account per spec (generated Alpaca-shaped keys)."""
    tenants = []
    for spec in specs:
        account = sim.add_tenant(scenario=spec.scenario)
        tenants.append(DemoTenant(spec, account.key_id, account.secret_key))
    return tenants


def seed_structure(db: firestore.Client, tenants: Sequence[DemoTenant]) -> None:
    """What onboarding writes: the user, unconfigured keys, the kill-switch."""
    for tenant in tenants:
        seed_user(
            db,
            tenant.uid,
            enabled=tenant.spec.enabled,
            configured=False,
            extra_user_fields={SCENARIO_FIELD: tenant.spec.label},
        )


def connect_keys(db: firestore.Client, tenants: Sequence[DemoTenant], base_url: str) -> None:
    """Each tenant writes its keys; the trigger does the rest."""
    for tenant in tenants:
        store_keys(
            db,
            tenant.uid,
            key_id=tenant.key_id,
            secret_key=tenant.secret_key,
            base_url=base_url,
        )


# --- the run's environment file, shared with `add` ---------------------------------------


def write_env_file(run_dir: Path, env: Mapping[str, str]) -> Path:
    """Where the running stack listens (hosts and URLs only, never a key)."""
    path = run_dir / ENV_FILE
    path.write_text("".join(f"{name}={value}\n" for name, value in sorted(env.items())))
    return path


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name and not name.startswith("#"):
            env[name] = value
    return env


def latest_env_file(runs_dir: Path = RUNS_DIR) -> Path | None:
    """The environment file of the newest run that is still running (it removes the file on
    exit)."""
    candidates = sorted(runs_dir.glob(f"run-*/{ENV_FILE}"))
    return candidates[-1] if candidates else None


# --- `add`: a new tenant while the stack runs -----------------------------------------------


def _create_sim_account(simulator_url: str, scenario: Scenario) -> tuple[str, str]:
    """Create a simulator account through its admin API; returns ``(key_id, secret_key)``."""
    body = json.dumps({"scenario": scenario.to_dict()}).encode()
    request = urllib.request.Request(
        f"{simulator_url}/_sim/tenants",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        created: dict[str, Any] = json.load(response)
    return str(created["key_id"]), str(created["secret_key"])


def add_tenant(
    db: firestore.Client,
    simulator_url: str,
    uid: str,
    scenario: Scenario,
    *,
    label: str,
    enabled: bool = True,
) -> bool:
    """Onboard ``uid`` (unless it exists) and write fresh keys; ``True`` if it was new.

    For an existing user the keys are rotated: the trigger syncs again with the new ones.
    """
    paths.validate_uid(uid)
    key_id, secret_key = _create_sim_account(simulator_url, scenario)
    new = not db.document(paths.user_doc(uid)).get().exists
    if new:
        seed_user(
            db, uid, enabled=enabled, configured=False, extra_user_fields={SCENARIO_FIELD: label}
        )
    else:
        db.document(paths.user_doc(uid)).set({SCENARIO_FIELD: label}, merge=True)
    store_keys(db, uid, key_id=key_id, secret_key=secret_key, base_url=simulator_url)
    return new


def scenario_label(scenario: Scenario) -> str:
    match scenario.kind:
        case "normal":
            return "healthy"
        case "latency":
            return f"slow ({scenario.latency_ms or 0:g} ms)"
        case "flaky":
            return f"flaky ({scenario.failure_rate:.0%} 503)"
        case "bad_keys":
            return "bad keys (401)"
        case _:
            return scenario.kind.replace("_", " ")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.localstack.demo",
        description="Demo tenants of the running local stack.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser(
        "add", help="onboard a tenant with a new simulator account and write its keys"
    )
    add.add_argument("uid")
    add.add_argument("--scenario", choices=SCENARIO_KINDS, default="normal")
    add.add_argument("--latency-ms", type=float, default=None)
    add.add_argument("--failure-rate", type=float, default=0.3, help="for --scenario flaky")
    add.add_argument("--disabled", action="store_true", help="kill-switch off (trading off)")
    add.add_argument(
        "--env",
        type=Path,
        default=None,
        help=f"the run's {ENV_FILE} (default: the newest under .local/run-*/)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    env_file = args.env or latest_env_file()
    if env_file is None or not env_file.is_file():
        print("no running local stack found: start it with `make run`", file=sys.stderr)
        return 2
    env = read_env_file(env_file)
    os.environ.update(env)
    try:
        scenario = Scenario(
            kind=args.scenario,
            latency_ms=args.latency_ms,
            failure_rate=args.failure_rate if args.scenario == "flaky" else 0.0,
        )
    except ValueError as err:
        print(f"bad scenario: {err}", file=sys.stderr)
        return 2
    from google.cloud import firestore

    db: Any = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"])
    label = scenario_label(scenario)
    try:
        new = add_tenant(
            db, env[SIMULATOR_URL_VAR], args.uid, scenario, label=label, enabled=not args.disabled
        )
    except (urllib.error.URLError, OSError) as err:
        print(f"the local stack of {env_file} does not answer ({err})", file=sys.stderr)
        return 1
    except ValueError as err:
        print(str(err), file=sys.stderr)
        return 2
    finally:
        db.close()
    action = "onboarded with" if new else "rotated to"
    print(f"{args.uid}: {action} a new simulator account ({label}); watch the view for its sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
