"""Stream chaos: N tenants streaming over 3 gateway instances while one is SIGKILLed, the
simulator drops every connection at once, and kill-switches flip — invariants checked.

    python -m chaos.streams [--tenants 1000] [--instances 3]

On the emulators, the Alpaca simulator (its own process) and ``python -m stream_gateway``
processes; a subscription taps ``user-sync`` (every sync the gateways publish). While a trader
places orders on random tenants (filled 200 ms later), a flipper turns a random tenant's
kill-switch off every second and on again 5 s later (the roster's trigger run by hand). At
``kill_at`` one gateway is SIGKILLed; at ``drop_at`` the simulator cuts every stream.

Invariants, each printed beside its bound:

- **never two connections for one account**: the simulator's ``refused_second`` stays 0 (it
  refuses and counts any second authentication for an account whose stream is open);
- **back within lease + backoff**: every tenant the killed instance streamed, and after the
  drop every tenant that streamed, streams again within one bound: ``LEASE_SECONDS`` + a scan
  + the first two reconnect delays + the spread the survivors' connection rates impose;
- **no event lost**: every fill the simulator produced is in ``users/{uid}/orders/{id}`` or a
  sync of that tenant was requested after it (the reconciliation a (re)connection publishes);
- **kill-switch off closes the stream within seconds**: p95 and max over the flips;
- **no reconnect storm**: the simulator's connection attempts per second, at most, against the
  instances' rate limits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import requests
from google.cloud import firestore

from agenttrader import paths, topology
from agenttrader.messages import parse_timestamp
from benchmarks.pipeline import start_simulator
from benchmarks.streams import enable, seed
from devtools import emulators
from devtools.localstack.gateways import GatewayProcess, spawn
from devtools.topology import apply_topology
from publisher import roster
from stream_gateway.backoff import RECONNECT
from stream_gateway.config import GatewayConfig
from stream_gateway.leases import LEASE_SECONDS, RENEW_SECONDS

TAP = "chaos-streams-tap"
FLIP_OFF_SECONDS = 5.0
CLOSE_GOAL_SECONDS = 5.0


@dataclass
class Timeline:
    kill_at: float = 20.0
    drop_at: float = 60.0
    end_at: float = 90.0


@dataclass
class Watch:
    """What the instances stream, sampled twice a second: uid → first time seen streaming
    after a mark, per mark."""

    gateways: list[GatewayProcess]
    lock: threading.Lock = field(default_factory=threading.Lock)
    streaming: set[str] = field(default_factory=set)
    marks: dict[str, tuple[float, set[str], dict[str, float]]] = field(default_factory=dict)
    """name → (when, the tenants awaited, uid → when seen streaming again)."""
    stop: threading.Event = field(default_factory=threading.Event)

    def mark(self, name: str, awaited: set[str]) -> None:
        with self.lock:
            self.marks[name] = (time.monotonic(), set(awaited), {})

    def run(self) -> None:
        while not self.stop.wait(0.5):
            now, seen = time.monotonic(), set()
            for gateway in self.gateways:
                if gateway.running:
                    with contextlib.suppress(OSError):
                        seen.update(gateway.health(timeout=2)["tenants"])
            with self.lock:
                self.streaming = seen
                for at, awaited, back in self.marks.values():
                    for uid in (awaited & seen) - back.keys():
                        if now - at > 1.0:  # seen again, not still listed from before
                            back[uid] = now - at


def run(tenants: int, instances: int, timeline: Timeline) -> dict[str, Any]:
    project = f"demo-chaos-streams-{uuid.uuid4().hex[:6]}"
    sim_port = emulators.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = start_simulator(sim_port)
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / project
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project=project) as hosts:
            env = {**hosts, "GOOGLE_CLOUD_PROJECT": project, "ALPACA_ALLOWED_BASE_URLS": sim_url}
            os.environ.update(env)
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
            apply_topology(project, publisher, subscriber)
            subscriber.create_subscription(
                name=subscriber.subscription_path(project, TAP),
                topic=publisher.topic_path(project, topology.USER_SYNC),
            )
            db = firestore.Client(project=project)
            result = scenario(
                db,
                env,
                sim_url,
                tenants=tenants,
                instances=instances,
                timeline=timeline,
                log_dir=log_dir,
            )
            syncs = collect_syncs(subscriber, project)
            subscriber.close()
            result["fills"] = lost_fills(db, sim_url, result.pop("accounts"), result, syncs)
            return result
    finally:
        simulator.terminate()
        simulator.wait(10)


def scenario(
    db: firestore.Client,
    env: dict[str, str],
    sim_url: str,
    *,
    tenants: int,
    instances: int,
    timeline: Timeline,
    log_dir: Path,
) -> dict[str, Any]:
    accounts = seed(db, sim_url, tenants, enabled=False)
    roster.load(db)
    gateways = [spawn(env, log_path=log_dir / f"stream-gateway-{n}.log") for n in range(instances)]
    watch = Watch(gateways)
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    rng = random.Random(7)
    trader = Trader(sim_url, accounts, rng)
    flipper = Flipper(db, sim_url, sorted(accounts), accounts, rng)
    try:
        enable(db, list(accounts))
        roster.rebuild(db)
        started = time.monotonic()
        wait_for(lambda: len(watch.streaming) == tenants, 180)
        all_up = time.monotonic() - started
        requests.post(f"{sim_url}/_sim/stream/reset", timeout=10)  # count from here
        t0 = time.monotonic()
        trader.start()
        flipper.start()
        sleep_until(t0 + timeline.kill_at)
        victim = gateways[-1]
        held = set(victim.health()["tenants"])
        victim.kill()
        watch.mark("kill", held)
        sleep_until(t0 + timeline.drop_at)
        with watch.lock:
            before_drop = set(watch.streaming)
        watch.mark("drop", before_drop)
        requests.post(f"{sim_url}/_sim/stream/drop", timeout=10)
        sleep_until(t0 + timeline.end_at)
        trader.stop()
        # A tenant switched off meanwhile was not owed a stream: not awaited.
        for at, awaited, _ in watch.marks.values():
            awaited.difference_update(flipper.off_between(at, time.monotonic()))
        flipper.stop()
        wait_for(lambda: len(watch.streaming) == tenants, 120)
        time.sleep(5)  # the last updates' order writes and syncs
        stream_stats = requests.get(f"{sim_url}/_sim/stream", timeout=10).json()
        survivors = [g.health() for g in gateways if g.running]
    finally:
        watch.stop.set()
        for gateway in gateways:
            gateway.stop()
    return {
        "tenants": tenants,
        "instances": instances,
        "all_streaming_seconds": round(all_up, 1),
        "killed_held": len(held),
        "marks": {
            name: {
                "awaited": len(awaited),
                "back": {uid: at for uid, at in back.items() if uid in awaited},
            }
            for name, (_, awaited, back) in watch.marks.items()
        },
        "stream": stream_stats,
        "orders": trader.placed,
        "flips": flipper.flips,
        "close_after_flip": flipper.closed_after,
        "survivors": [
            {k: h[k] for k in ("connection_attempts", "events", "lease_losses")} for h in survivors
        ],
        "accounts": accounts,
    }


class Trader(threading.Thread):
    """Orders on random tenants, 10 a second (market: filled 200 ms later)."""

    def __init__(self, sim_url: str, accounts: dict[str, str], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self._url, self._accounts, self._rng = sim_url, accounts, rng
        self._halt = threading.Event()
        self.placed: list[tuple[str, str]] = []

    def run(self) -> None:
        session = requests.Session()
        uids = sorted(self._accounts)
        while not self._halt.wait(0.1):
            uid = self._rng.choice(uids)
            reply = session.post(
                f"{self._url}/_sim/tenants/{self._accounts[uid]}/orders",
                json={"symbol": "KO", "qty": 1, "fill_delay_ms": 200},
                timeout=10,
            )
            if reply.status_code == 200:
                self.placed.append((uid, reply.json()["id"]))

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Flipper(threading.Thread):
    """Every second, one tenant's kill-switch off (its stream must close within seconds),
    back on ``FLIP_OFF_SECONDS`` later."""

    def __init__(
        self,
        db: firestore.Client,
        sim_url: str,
        uids: list[str],
        accounts: dict[str, str],
        rng: random.Random,
    ) -> None:
        super().__init__(daemon=True)
        self._db, self._url, self._uids, self._accounts, self._rng = (
            db,
            sim_url,
            uids,
            accounts,
            rng,
        )
        self._halt = threading.Event()
        self._off: dict[str, float] = {}
        self._lock = threading.Lock()
        self.history: list[tuple[str, float, float]] = []
        """(uid, off at, on at): monotonic times."""
        self.flips = 0
        self.closed_after: list[float] = []

    def off_between(self, start: float, end: float) -> set[str]:
        """Tenants whose kill-switch was off at some moment between ``start`` and ``end``."""
        with self._lock:
            ended = {uid for uid, off, on in self.history if off <= end and on >= start}
            return ended | {uid for uid, off in self._off.items() if off <= end}

    def _set(self, uid: str, enabled: bool) -> None:
        self._db.document(paths.trading_status_doc(uid)).update({"enabled": enabled})
        roster.refresh(self._db, uid)  # what on_trading_status_written does

    def run(self) -> None:
        session = requests.Session()
        watching: dict[str, float] = {}
        while not self._halt.wait(1.0):
            now = time.monotonic()
            for uid, since in list(self._off.items()):
                if now - since >= FLIP_OFF_SECONDS:
                    self._set(uid, True)
                    with self._lock:
                        del self._off[uid]
                        self.history.append((uid, since, time.monotonic()))
                    watching.pop(uid, None)
            uid = self._rng.choice(self._uids)
            if uid not in self._off:
                self._set(uid, False)
                with self._lock:
                    self._off[uid] = time.monotonic()
                watching[uid] = time.monotonic()
                self.flips += 1
            opened = set(session.get(f"{self._url}/_sim/stream/open", timeout=10).json())
            for uid, since in list(watching.items()):
                if self._accounts[uid] not in opened:
                    self.closed_after.append(time.monotonic() - since)
                    del watching[uid]

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        for uid in list(self._off):
            self._set(uid, True)


def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("condition not met in time")
        time.sleep(0.5)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def collect_syncs(subscriber: Any, project: str) -> dict[str, list[datetime]]:
    """Every sync requested of each tenant (requested_at), from the tap."""
    path = subscriber.subscription_path(project, TAP)
    found: dict[str, list[datetime]] = {}
    while True:
        response = subscriber.pull(request={"subscription": path, "max_messages": 1000}, timeout=10)
        if not response.received_messages:
            return found
        for received in response.received_messages:
            body = json.loads(received.message.data)
            found.setdefault(body["uid"], []).append(parse_timestamp(body["requested_at"], "at"))
        subscriber.acknowledge(
            request={
                "subscription": path,
                "ack_ids": [m.ack_id for m in response.received_messages],
            }
        )


def lost_fills(
    db: firestore.Client,
    sim_url: str,
    accounts: dict[str, str],
    result: dict[str, Any],
    syncs: dict[str, list[datetime]],
) -> tuple[int, int, int]:
    """(fills the simulator produced, stored in ``orders/``, recovered by a sync of the tenant
    requested after the fill); the rest were lost."""
    fills = stored = recovered = 0
    by_uid: dict[str, list[str]] = {}
    for uid, order_id in result["orders"]:
        by_uid.setdefault(uid, []).append(order_id)
    session = requests.Session()
    for uid, order_ids in by_uid.items():
        refs = [db.document(paths.order_doc(uid, oid)) for oid in order_ids]
        docs = {s.id: (s.to_dict() or {}) if s.exists else {} for s in db.get_all(refs)}
        listed = session.get(f"{sim_url}/_sim/tenants/{accounts[uid]}/orders", timeout=10).json()
        filled_at = {o["id"]: o["filled_at"] for o in listed if o.get("filled_at")}
        for oid in order_ids:
            if oid not in filled_at:
                continue
            fills += 1
            at = parse_timestamp(filled_at[oid], "filled_at")
            if docs.get(oid, {}).get("event") == "fill":
                stored += 1
            elif any(t > at for t in syncs.get(uid, [])):
                recovered += 1
    return fills, stored, recovered


def report(result: dict[str, Any]) -> tuple[str, bool]:
    config = GatewayConfig()
    spread = result["tenants"] / (config.connects_per_second * (result["instances"] - 1))
    # The lease time (a dead holder's buckets are taken once its lease ran out and a scan saw
    # it), plus the reconnect backoff of a stream's first two attempts, plus the spread of the
    # connections the survivors' rate limits impose.
    backoff = RECONNECT.delay(1, lambda: 1.0) + RECONNECT.delay(2, lambda: 1.0)
    bound = LEASE_SECONDS + RENEW_SECONDS + backoff + spread
    storm_bound = result["instances"] * (config.connects_per_second + config.connect_burst)
    rows: list[tuple[str, str, str, bool]] = []

    def back(name: str, bound: float) -> None:
        mark = result["marks"][name]
        times = sorted(mark["back"].values())
        missing = mark["awaited"] - len(times)
        worst = times[-1] if times else float("nan")
        ok = missing == 0 and worst <= bound
        rows.append(
            (
                f"{name}: {mark['awaited']} tenants streamed again, slowest",
                f"{worst:.1f} s (p50 {times[len(times) // 2] if times else float('nan'):.1f} s)"
                + (f", {missing} never" if missing else ""),
                f"≤ {bound:.1f} s",
                ok,
            )
        )

    stream = result["stream"]
    rows.append(
        (
            "second connections for one account (simulator)",
            str(stream["refused_second"]),
            "0",
            stream["refused_second"] == 0,
        )
    )
    back("kill", bound)
    back("drop", bound)
    fills, stored, recovered = result["fills"]
    lost = fills - stored - recovered
    rows.append(
        (
            "fills: in orders/ + recovered by a later sync = produced",
            f"{stored} + {recovered} = {stored + recovered} of {fills}",
            "0 lost",
            lost == 0,
        )
    )
    closes = sorted(result["close_after_flip"])
    p95 = closes[int(0.95 * (len(closes) - 1))] if closes else float("nan")
    rows.append(
        (
            f"kill-switch off → stream closed ({len(closes)} of {result['flips']} flips)",
            f"p95 {p95:.1f} s, max {closes[-1] if closes else float('nan'):.1f} s",
            f"≤ {CLOSE_GOAL_SECONDS:g} s",
            bool(closes) and closes[-1] <= CLOSE_GOAL_SECONDS,
        )
    )
    rows.append(
        (
            "connection attempts per second, at most (simulator)",
            f"{stream['attempts_per_second_max']} ({stream['handshakes']} in all)",
            f"≤ {storm_bound}",
            stream["attempts_per_second_max"] <= storm_bound,
        )
    )
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [
        f"Stream chaos: {result['tenants']:,} tenants over {result['instances']} instances "
        f"(all streaming after {result['all_streaming_seconds']} s; the SIGKILLed one held "
        f"{result['killed_held']}; {len(result['orders'])} orders, {result['flips']} flips)",
    ]
    for name, value, bound, ok in rows:
        lines.append(
            f"  {name.ljust(width[0])}  {value.ljust(width[1])}  {bound.ljust(width[2])}  "
            f"{'PASS' if ok else 'FAIL'}"
        )
    return "\n".join(lines), all(r[3] for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.tenants, args.instances, Timeline())
    text, ok = report(result)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
