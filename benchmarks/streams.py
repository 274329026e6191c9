"""Stream benchmark: 1,000 tenants streaming through one gateway instance, each filled once.

    python -m benchmarks.streams [--tenants 1000] [--fills-per-second 20] [--json out.json]

Against the emulators, the Alpaca simulator (its own process: 1,000 websockets), one
``python -m stream_gateway`` process and the pipeline (``sync_user`` under functions-framework,
the push bridge), on this machine. Measured:

- **memory per idle connection**: the gateway's resident memory once every tenant streams and
  the streams are idle, minus its resident memory before any tenant existed, divided by the
  tenants: everything a tenant costs the instance (its roster entry, its credentials kept,
  one task and one websocket);
- **idle CPU** of the instance holding them (keepalive pings), per 1,000 connections;
- **fill → order document**: each fill's timestamp (the simulator's clock) to the commit of
  ``users/{uid}/orders/{order_id}`` showing it (its update time, the emulator's clock: one
  machine);
- **fill → account snapshot**: to the commit of the first ``users/{uid}/data/snapshot`` whose
  positions show the fill (a Firestore listener records every snapshot write's update time):
  the coalesced ``trade_update`` sync through Pub/Sub, the push bridge and ``sync_user``;
- **CPU per 1,000 events** of the gateway process while the fills stream in, and the syncs it
  published per order (coalescing).

Each order is a market order answered ``new`` at once and filled 200 ms later (one step):
two updates per tenant, at ``--fills-per-second`` orders a second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests
from google.cloud import firestore

from agenttrader import paths
from benchmarks import procstats
from benchmarks.pipeline import start_simulator
from devtools import emulators
from devtools.localstack.gateways import GatewayProcess, spawn
from devtools.localstack.stack import LocalStack
from publisher import roster

GOAL_P95_SECONDS = 2.0
GOAL_KIB_PER_CONNECTION = 100.0
SYMBOL = "ZZBENCH"
"""Held by nobody before: a snapshot showing this position shows the fill."""
FILL_DELAY_MS = 200
IDLE_SECONDS = 20.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return (float("nan"),) * 3

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return at(0.50), at(0.95), at(0.99)


def seed(db: firestore.Client, sim_url: str, n: int, *, enabled: bool = True) -> dict[str, str]:
    """``n`` tenants with a simulator account each (their kill-switch ``enabled``); uid → key
    id."""
    session = requests.Session()
    accounts: dict[str, str] = {}
    batch, pending = db.batch(), 0
    for i in range(n):
        uid = f"stream-{i:05d}"
        account = session.post(f"{sim_url}/_sim/tenants", json={"positions": []}, timeout=10).json()
        accounts[uid] = account["key_id"]
        keys = {
            "key_id": account["key_id"],
            "secret_key": account["secret_key"],
            "base_url": sim_url,
        }
        for path, body in (
            (paths.user_doc(uid), {"onboarded": True, "email": f"{uid}@example.com"}),
            (paths.alpaca_config_doc(uid), {"configured": True, "configuredAt": datetime.now(UTC)}),
            (paths.trading_status_doc(uid), {"enabled": enabled}),
            (paths.alpaca_secret_doc(uid), keys),
        ):
            batch.set(db.document(path), body)
            pending += 1
        if pending >= 400:
            batch.commit()
            batch, pending = db.batch(), 0
    if pending:
        batch.commit()
    return accounts


class FillWatch:
    """Polls the order and snapshot documents of the tenants with a fill in flight (4 times a
    second, field masks: a few dozen small reads) and keeps, per fill, the update time of the
    first order document showing it and of the first snapshot showing its position. A write is
    missed only if a second one lands before the next poll: then its update time is the later
    one's (the latency is over-, never under-estimated)."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db
        self._lock = threading.Lock()
        self.pending: dict[str, str] = {}
        """uid → order id of the fill not yet seen in both documents."""
        self.fills: dict[str, tuple[datetime, Decimal]] = {}
        """uid → (the fill's timestamp, the position after it), from the order document."""
        self.order_lat: dict[str, float] = {}
        self.snap_lat: dict[str, float] = {}

    def expect(self, uid: str, order_id: str) -> None:
        with self._lock:
            self.pending[uid] = order_id

    def poll(self) -> int:
        with self._lock:
            pending = dict(self.pending)
        if not pending:
            return 0
        orders = [self._db.document(paths.order_doc(u, o)) for u, o in pending.items()]
        snaps = [self._db.document(paths.snapshot_doc(u)) for u in pending]
        fields = ["event", "eventAt", "positionQty"]
        for snap in self._db.get_all(orders, field_paths=fields):
            data = snap.to_dict() if snap.exists else None
            uid = paths.uid_of(snap.reference.path)
            if data and data.get("event") == "fill" and uid not in self.fills:
                self.fills[uid] = (data["eventAt"], Decimal(str(data.get("positionQty"))))
                self.order_lat[uid] = (snap.update_time - data["eventAt"]).total_seconds()
        for snap in self._db.get_all(snaps, field_paths=["positions"]):
            uid = paths.uid_of(snap.reference.path)
            if uid not in self.fills or not snap.exists:
                continue
            filled_at, qty = self.fills[uid]
            held = [
                Decimal(str(p.get("qty")))
                for p in (snap.to_dict() or {}).get("positions") or []
                if p.get("symbol") == SYMBOL
            ]
            if held == [qty] and snap.update_time >= filled_at:
                self.snap_lat[uid] = (snap.update_time - filled_at).total_seconds()
                with self._lock:
                    self.pending.pop(uid, None)
        return len(pending)

    def watch(self, until: threading.Event, deadline: float) -> None:
        """Poll until ``until`` is set and nothing is pending, or the deadline."""
        while time.monotonic() < deadline:
            if not self.poll() and until.is_set():
                return
            time.sleep(0.25)


def enable(db: firestore.Client, uids: Sequence[str]) -> None:
    """Every tenant switches trading on."""
    batch, pending = db.batch(), 0
    for uid in uids:
        batch.update(db.document(paths.trading_status_doc(uid)), {"enabled": True})
        pending += 1
        if pending == 400:
            batch.commit()
            batch, pending = db.batch(), 0
    if pending:
        batch.commit()


def wait_streaming(gateway: GatewayProcess, n: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if gateway.health(timeout=5)["streaming"] >= n:
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(
        f"not every tenant streams after {timeout} s: {gateway.health()['streaming']}"
    )


def fill_orders(sim_url: str, accounts: dict[str, str], rate: float, watch: FillWatch) -> list[str]:
    """One market order per tenant, ``rate`` a second; returns the order ids."""
    session = requests.Session()
    ids = []
    started = time.monotonic()
    for n, (uid, key_id) in enumerate(accounts.items()):
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        reply = session.post(
            f"{sim_url}/_sim/tenants/{key_id}/orders",
            json={"symbol": SYMBOL, "qty": 7, "fill_delay_ms": FILL_DELAY_MS, "partial_fills": 1},
            timeout=10,
        )
        if reply.status_code != 200:
            raise RuntimeError(f"order refused: HTTP {reply.status_code} {reply.text[:200]}")
        ids.append(reply.json()["id"])
        watch.expect(uid, ids[-1])
    return ids


def run(tenants: int, rate: float) -> dict[str, Any]:
    project = f"demo-streams-{uuid.uuid4().hex[:8]}"
    sim_port = emulators.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = start_simulator(sim_port)
    try:
        with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project=project) as hosts:
            env = {
                **hosts,
                "GOOGLE_CLOUD_PROJECT": project,
                "ALPACA_ALLOWED_BASE_URLS": sim_url,
                "THREADS": "64",
                "LOG_LEVEL": "WARNING",
            }
            os.environ.update(env)
            db = firestore.Client(project=project)
            with LocalStack(
                project, env, in_process=False, push_concurrency=64, audit_kill_switch=False
            ) as stack:
                return measure(db, env, sim_url, stack, tenants=tenants, rate=rate)
    finally:
        simulator.terminate()
        simulator.wait(10)


def wait_quiet(stack: LocalStack, quiet: float = 5.0, timeout: float = 300.0) -> None:
    """Until the push bridge has delivered nothing for ``quiet`` seconds (the reconcile syncs
    of a thousand new streams take the pipeline a while on two cores)."""
    assert stack.push_bridge is not None
    last, since, started = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - started < timeout:
        delivered = stack.push_bridge.stats.delivered
        if delivered != last:
            last, since = delivered, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.5)


def measure(
    db: firestore.Client,
    env: dict[str, str],
    sim_url: str,
    stack: LocalStack,
    *,
    tenants: int,
    rate: float,
) -> dict[str, Any]:
    roster.load(db)  # built empty: the gateway starts with nobody to stream
    gateway = spawn(
        {
            **env,
            "STREAM_CONNECTS_PER_SECOND": "200",
            "STREAM_CONNECT_BURST": "100",
            "LOG_LEVEL": "DEBUG",
        },
        log_path=Path(tempfile.gettempdir()) / "agenttrader-bench-stream-gateway.log",
    )
    try:
        time.sleep(8)
        base_rss = rss_kib(gateway.process.pid)  # running, holding its buckets, no tenant yet
        base_cpu = cpu_seconds(gateway.process.pid)
        time.sleep(IDLE_SECONDS)
        base_cpu = cpu_seconds(gateway.process.pid) - base_cpu  # its loops, no stream
        # Seeded with trading off: the secrets trigger validates the keys and stamps their
        # version (the pipeline runs each tenant's first sync); then everyone switches on.
        accounts = seed(db, sim_url, tenants, enabled=False)
        wait_quiet(stack)
        enable(db, accounts)
        roster.rebuild(db)  # what the kill-switch triggers do (the benchmark runs none)
        connect_seconds = wait_streaming(gateway, tenants, timeout=300)
        wait_quiet(stack)  # the reconcile syncs of the listens go through the pipeline
        idle_cpu_before = cpu_seconds(gateway.process.pid)
        time.sleep(IDLE_SECONDS)
        idle_cpu = cpu_seconds(gateway.process.pid) - idle_cpu_before
        idle_rss = rss_kib(gateway.process.pid)
        fills = FillWatch(db)
        before = gateway.health()
        cpu_before = cpu_seconds(gateway.process.pid)
        tree_before = procstats.sample_tree()
        fill_started = time.monotonic()
        placed = threading.Event()
        poller = threading.Thread(
            target=fills.watch, args=(placed, time.monotonic() + 600), daemon=True
        )
        poller.start()
        order_ids = fill_orders(sim_url, accounts, rate, fills)
        time.sleep(FILL_DELAY_MS / 1000 + 3)
        fill_seconds = time.monotonic() - fill_started
        tree_after = procstats.sample_tree()
        by_process: dict[str, float] = defaultdict(float)
        for pid, sample in tree_after.items():
            start = tree_before.get(pid)
            by_process[sample.name] += sample.cpu_seconds - (start.cpu_seconds if start else 0.0)
        # What the events cost: the process's CPU meanwhile, minus what it spends idle.
        fill_cpu = (
            cpu_seconds(gateway.process.pid) - cpu_before - idle_cpu / IDLE_SECONDS * fill_seconds
        )
        after = gateway.health()
        placed.set()
        poller.join()
        order_lat, snap_lat = list(fills.order_lat.values()), list(fills.snap_lat.values())
        missing_orders, missing_snaps = tenants - len(order_lat), tenants - len(snap_lat)
        sim_stream = requests.get(f"{sim_url}/_sim/stream", timeout=10).json()
    finally:
        gateway.stop()
    events = after["events"] - before["events"]
    trade_syncs = after["syncs"].get("trade_update", 0) - before["syncs"].get("trade_update", 0)
    return {
        "tenants": tenants,
        "fills_per_second": rate,
        "connect_all_seconds": round(connect_seconds, 2),
        "rss_before_streams_kib": base_rss,
        "rss_idle_kib": idle_rss,
        "kib_per_idle_connection": round((idle_rss - base_rss) / tenants, 1),
        "idle_cpu_percent_no_tenant": round(base_cpu / IDLE_SECONDS * 100, 2),
        "idle_cpu_percent_per_1000": round(
            (idle_cpu - base_cpu) / IDLE_SECONDS * 100 * 1000 / tenants, 2
        ),
        "events": events,
        "gateway_cpu_ms_per_1000_events": round(fill_cpu / max(events, 1) * 1e6, 1),
        "fill_phase_seconds": round(fill_seconds, 1),
        "trade_update_syncs_per_order": round(trade_syncs / len(order_ids), 2),
        "fill_to_order_doc": [round(v, 3) for v in percentiles(order_lat)],
        "fill_to_snapshot": [round(v, 3) for v in percentiles(snap_lat)],
        "orders_missing": missing_orders,
        "snapshots_missing": missing_snaps,
        "refused_second": sim_stream["refused_second"],
        "connections": after["connections"],
        "lease_losses": after["lease_losses"],
        "streams_stopped": after["stopped"],
        "streams_ended_by_server": after["ended"],
        "watchdog_aborts": after["watchdog_aborts"],
        "simulator_events_lost": sim_stream["events_lost"],
        "cpu_seconds_by_process_during_fills": {
            name: round(seconds, 1) for name, seconds in sorted(by_process.items())
        },
        "simulator_events_sent": sim_stream["events_sent"],
    }


def report(r: dict[str, Any]) -> str:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    o50, o95, o99 = r["fill_to_order_doc"]
    s50, s95, s99 = r["fill_to_snapshot"]
    kib = r["kib_per_idle_connection"]
    rows = [
        ("figure", "measured", "goal"),
        (
            "tenants streaming through one instance",
            f"{r['tenants']:,} (all connected in {r['connect_all_seconds']} s)",
            "—",
        ),
        (
            "fill → order document p50 / p95 / p99",
            f"{o50:.3f} / {o95:.3f} / {o99:.3f} s",
            f"p95 < {GOAL_P95_SECONDS:g} s {verdict(o95 < GOAL_P95_SECONDS)}",
        ),
        (
            "fill → account snapshot p50 / p95 / p99",
            f"{s50:.3f} / {s95:.3f} / {s99:.3f} s",
            f"p95 < {GOAL_P95_SECONDS:g} s {verdict(s95 < GOAL_P95_SECONDS)}",
        ),
        (
            "fills not stored / snapshots not showing them",
            f"{r['orders_missing']} / {r['snapshots_missing']}",
            "0 / 0",
        ),
        (
            "memory per idle connection",
            f"{kib:.1f} KiB ({r['rss_before_streams_kib'] / 1024:.0f} → "
            f"{r['rss_idle_kib'] / 1024:.0f} MiB)",
            f"≤ {GOAL_KIB_PER_CONNECTION:g} KiB {verdict(kib <= GOAL_KIB_PER_CONNECTION)}",
        ),
        (
            "idle CPU per 1,000 connections (keepalive; instance alone)",
            f"{r['idle_cpu_percent_per_1000']:.2f} % of a core "
            f"({r['idle_cpu_percent_no_tenant']:.2f} %)",
            "—",
        ),
        (
            "gateway CPU per 1,000 events",
            f"{r['gateway_cpu_ms_per_1000_events']:.0f} ms "
            f"({r['events']:,} events in {r['fill_phase_seconds']} s)",
            "—",
        ),
        (
            "trade_update syncs per order (new + fill 200 ms apart)",
            f"{r['trade_update_syncs_per_order']:.2f}",
            "≤ 2",
        ),
        ("second connections refused by the simulator", str(r["refused_second"]), "0"),
    ]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [" | ".join(cell.ljust(width[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in width))
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    return f"Streams ({machine}, {datetime.now(UTC):%Y-%m-%d}):\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--fills-per-second", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.tenants, args.fills_per_second)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
