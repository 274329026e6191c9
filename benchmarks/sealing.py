"""Sealed credentials, measured against the emulators and the Alpaca simulator:

    python -m benchmarks.sealing [--tenants 50] [--cpu-tenants 150] [--rounds 7]

1. **Key write → sealed**, over ``--tenants`` tenants writing their keys as clients do, through
   the local stack (Firestore listener → Eventarc bridge → ``on_alpaca_secret_written`` →
   push bridge → ``sync_user``): how long each tenant's keys rested in plaintext, from
   Firestore's own update times of the client's write and of the trigger's sealed rewrite
   (p50 / p95 / max; goal p95 < 2 s), and that every first sync then succeeded from the sealed
   form. A first batch of tenants warms the emulators' JIT and is not reported.
2. **Worker CPU per warm sync, before and after sealing**: one in-process ``SyncWorker`` (as a
   warm instance: credentials cached, connections open) syncs ``--cpu-tenants`` tenants with
   plaintext keys (before) and as many with sealed ones (after), alternately, ``--rounds``
   times; this process's CPU per sync, median of the rounds (goal: after ≤ 1.10 × before).
   Both for scheduled messages (they carry ``keys_version``: the cache answers) and for
   messages without a version (replays, manual syncs: the secrets document is read and, when
   sealed, opened from the vault's memory).
3. **KEK operations per 1,000 syncs**, counted by the worker's vault over the same syncs: the
   first pass opens each tenant's credentials once, the warm passes ask nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agenttrader import paths
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.keys_version import stored_version
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import Settings
from devtools import emulators
from devtools.localstack.seed import seed_user
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator
from operations.credentials import seal_existing
from sync_worker.worker import Result, SyncWorker

GOAL_SEALED_P95_S = 2.0
GOAL_CPU_RATIO = 1.10
WARMUP_TENANTS = 10
WRITERS = 10
"""Clients writing their keys at the same time."""


@dataclass(frozen=True)
class Rested:
    """How long each tenant's keys rested in plaintext, in seconds."""

    seconds: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class SecretsWrites:
    """Each write of a ``secrets/alpaca`` document, with Firestore's update time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.plaintext: dict[str, datetime] = {}
        self.sealed: dict[str, datetime] = {}

    def __call__(self, snapshots: list[Any], changes: list[Any], read_time: Any) -> None:
        with self._lock:
            for change in changes:
                document = change.document
                if not document.exists:
                    continue
                kind = self.sealed if (document.to_dict() or {}).get("sealed") else self.plaintext
                kind.setdefault(document.reference.path, document.update_time)

    def rested(self, paths_: Sequence[str]) -> Rested | None:
        """``None`` until every path was written and sealed."""
        with self._lock:
            if not all(p in self.plaintext and p in self.sealed for p in paths_):
                return None
            return Rested([(self.sealed[p] - self.plaintext[p]).total_seconds() for p in paths_])


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _keys(sim: AlpacaSimulator) -> dict[str, str]:
    account = sim.add_tenant()
    return {"key_id": account.key_id, "secret_key": account.secret_key, "base_url": sim.base_url}


def write_to_sealed(db: Any, sim: AlpacaSimulator, uids: Sequence[str]) -> Rested:
    """Every tenant writes keys (``WRITERS`` at a time); wait until all are sealed and their
    first syncs succeeded."""
    for uid in uids:
        seed_user(db, uid, configured=False, enabled=False)
    writes = SecretsWrites()
    watch = db.collection_group("secrets").on_snapshot(writes)
    try:
        keys = {uid: _keys(sim) for uid in uids}
        with ThreadPoolExecutor(WRITERS) as pool:
            list(
                pool.map(lambda uid: db.document(paths.alpaca_secret_doc(uid)).set(keys[uid]), uids)
            )
        secret_paths = [paths.alpaca_secret_doc(uid) for uid in uids]
        rested: Rested = _wait(lambda: writes.rested(secret_paths), 120, "the keys to be sealed")
    finally:
        watch.unsubscribe()

    def proven() -> bool:
        configs = db.get_all([db.document(paths.alpaca_config_doc(uid)) for uid in uids])
        return all((c.to_dict() or {}).get("configured") is True for c in configs)

    _wait(proven, 120, "every first sync to prove its keys")
    return rested


def _deliveries(uids: Sequence[str], versions: dict[str, str | None]) -> list[PubsubDelivery]:
    now = datetime.now(UTC)
    out = []
    for uid in uids:
        version = versions.get(uid)
        reason = Reason.SCHEDULE if version is not None else Reason.MANUAL
        request = SyncRequest(uid, reason, now, keys_version=version)
        out.append(
            PubsubDelivery(uuid.uuid4().hex, request.to_bytes(), request.attributes(), now, 1)
        )
    return out


def _cpu_per_sync(worker: SyncWorker, deliveries: list[PubsubDelivery]) -> float:
    """Milliseconds of this process's CPU per delivery, every one synced."""
    started = time.process_time()
    results = [worker.handle(delivery) for delivery in deliveries]
    cpu = time.process_time() - started
    if any(result is not Result.SYNCED for result in results):
        raise RuntimeError(f"not every sync succeeded: {sorted({str(r) for r in results})}")
    return cpu * 1000 / len(deliveries)


@dataclass(frozen=True)
class CpuFigures:
    before_ms: float
    after_ms: float
    kek_cold: int
    """KEK operations of the first (cold) pass over the sealed tenants."""
    kek_warm: int
    """... of every later pass."""
    syncs_cold: int
    syncs_warm: int

    @property
    def ratio(self) -> float:
        return self.after_ms / self.before_ms


def worker_cpu(
    deps: Deps, sim: AlpacaSimulator, n: int, rounds: int, versioned: bool
) -> CpuFigures:
    """CPU per warm sync of ``n`` plaintext and ``n`` sealed tenants, alternately."""
    db = deps.firestore
    run = uuid.uuid4().hex[:6]
    plain = [f"cpu-{run}-plain-{i:04d}" for i in range(n)]
    sealed = [f"cpu-{run}-sealed-{i:04d}" for i in range(n)]
    for uid in plain + sealed:
        seed_user(db, uid, keys=_keys(sim))
    seal_existing(db, deps.vault, ids=sealed)
    versions: dict[str, str | None] = {}
    if versioned:
        for uid in plain + sealed:
            versions[uid] = stored_version(db.document(paths.alpaca_secret_doc(uid)).get())
    worker = SyncWorker(deps)
    kek = deps.vault.stats().kek.total
    _cpu_per_sync(worker, _deliveries(plain + sealed, versions))  # cold: opened, connected
    kek_cold = deps.vault.stats().kek.total - kek
    before, after = [], []
    for _ in range(rounds):
        before.append(_cpu_per_sync(worker, _deliveries(plain, versions)))
        after.append(_cpu_per_sync(worker, _deliveries(sealed, versions)))
    return CpuFigures(
        statistics.median(before),
        statistics.median(after),
        kek_cold,
        deps.vault.stats().kek.total - kek - kek_cold,
        syncs_cold=len(sealed),
        syncs_warm=rounds * len(sealed),
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sealing")
    parser.add_argument("--tenants", type=int, default=50, help="tenants writing keys")
    parser.add_argument("--cpu-tenants", type=int, default=150, help="tenants per CPU group")
    parser.add_argument("--rounds", type=int, default=7, help="alternating CPU passes")
    args = parser.parse_args(argv)
    project = f"demo-seal-{uuid.uuid4().hex[:6]}"
    with (
        emulators.running(emulators.FIRESTORE, emulators.PUBSUB, project=project) as hosts,
        AlpacaSimulator() as sim,
    ):
        env = {
            **hosts,
            "GOOGLE_CLOUD_PROJECT": project,
            "ALPACA_ALLOWED_BASE_URLS": sim.base_url,
        }
        os.environ.update(env)
        deps = Deps(Settings.from_env())
        db = deps.firestore
        with LocalStack(project, env):
            write_to_sealed(db, sim, [f"warm-{i:03d}" for i in range(WARMUP_TENANTS)])
            rested = write_to_sealed(db, sim, [f"seal-{i:03d}" for i in range(args.tenants)])
        scheduled = worker_cpu(deps, sim, args.cpu_tenants, args.rounds, versioned=True)
        unversioned = worker_cpu(deps, sim, args.cpu_tenants, args.rounds, versioned=False)

    p95 = rested.percentile(95)
    print(f"\nkey write → sealed, {args.tenants} tenants writing keys ({WRITERS} at a time)")
    print(
        f"  plaintext rested p50 {rested.percentile(50) * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms, max {max(rested.seconds) * 1000:.0f} ms "
        f"(Firestore update times; goal p95 < {GOAL_SEALED_P95_S:.0f} s: "
        f"{_verdict(p95 < GOAL_SEALED_P95_S)}); every first sync succeeded from the sealed form"
    )
    print(
        f"\nworker CPU per warm sync (one instance, {args.cpu_tenants} tenants per group, "
        f"median of {args.rounds} alternating passes; this process, simulator included)"
    )
    print(f"  {'messages':<44}{'plaintext ms':>14}{'sealed ms':>11}{'ratio':>8}")
    for label, figures in (
        ("scheduled (keys_version: cached credentials)", scheduled),
        ("without keys_version (document read again)", unversioned),
    ):
        ok = figures.ratio <= GOAL_CPU_RATIO
        print(
            f"  {label:<44}{figures.before_ms:>14.2f}{figures.after_ms:>11.2f}"
            f"{figures.ratio:>7.2f}×  goal ≤ {GOAL_CPU_RATIO:.2f}×: {_verdict(ok)}"
        )
    print("\nKEK operations (Cloud KMS requests in production) per 1,000 syncs")
    for label, figures in (("scheduled", scheduled), ("without keys_version", unversioned)):
        cold = figures.kek_cold * 1000 / figures.syncs_cold
        warm = figures.kek_warm * 1000 / figures.syncs_warm
        print(
            f"  {label:<22} first pass of a new instance {cold:6.0f} (one per tenant), "
            f"warm passes {warm:4.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
