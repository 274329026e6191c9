"""Publisher at scale: one tick's fan-out over N eligible tenants against the emulators.

Seeds N tenants with the documents eligibility is decided from (``users/{uid}`` for the count,
``config/alpaca {configured, configuredAt}``, ``status/trading {enabled}``), builds the roster
from them once (what a new deployment's first tick does; afterwards the triggers keep it), then
runs :func:`publisher.tick.fan_out` once and times its phases: reading the roster, counting
the users (in its own thread), publishing (``bulk_publish``), and the rest (pulse documents,
rollups). Then, on the same data, the baseline: the design before the roster (two
collection-group scans, the count, one client ``publish`` future per message). Only the
publisher is measured: ``user-sync`` has no subscriber that is fed here.

    python -m benchmarks.publisher_scale --tenants 100000 [--profile] [--no-baseline]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import io
import os
import platform
import pstats
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agenttrader import paths, topology
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import Settings
from benchmarks import procstats
from devtools import emulators
from devtools.topology import apply_topology
from publisher import roster
from publisher import tick as fanout

GOAL_SECONDS = 10.0
BATCH_WRITES = 500
"""Firestore's limit of writes per commit."""
DOCS_PER_TENANT = 3


def uid_of(i: int) -> str:
    """28 characters, the length of a Firebase uid, so message sizes are realistic."""
    return f"tenant-{i:07d}-{'x' * 13}"


def seed(db: Any, n: int, threads: int) -> float:
    """Write N eligible tenants in parallel batch commits; returns the seconds it took."""
    configured_at = datetime(2026, 1, 1, tzinfo=UTC)
    per_batch = BATCH_WRITES // DOCS_PER_TENANT

    def commit(start: int) -> None:
        batch = db.batch()
        for i in range(start, min(start + per_batch, n)):
            uid = uid_of(i)
            batch.set(db.document(paths.user_doc(uid)), {"onboarded": True})
            batch.set(
                db.document(paths.alpaca_config_doc(uid)),
                {"configured": True, "configuredAt": configured_at},
            )
            batch.set(db.document(paths.trading_status_doc(uid)), {"enabled": True})
        batch.commit()

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        for future in concurrent.futures.as_completed(
            [pool.submit(commit, start) for start in range(0, n, per_batch)]
        ):
            future.result()
    return time.monotonic() - started


@dataclass
class Phase:
    wall_s: float = 0.0
    cpu_s: float = 0.0


@dataclass
class Phases:
    """Wall and CPU time of this process per phase of ``fan_out``."""

    by_name: dict[str, Phase] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.monotonic(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                phase = self.by_name.setdefault(name, Phase())
                phase.wall_s += time.monotonic() - wall
                phase.cpu_s += time.process_time() - cpu

        return wrapped


@contextmanager
def phases_of_fan_out() -> Iterator[Phases]:
    """Time ``fan_out``'s phases by wrapping what it calls."""
    phases = Phases()
    wrapped = [(roster, "load", "roster"), (fanout, "_publish", "publish")]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in wrapped]
    for (owner, attr, name), (_, _, original) in zip(wrapped, originals, strict=True):
        setattr(owner, attr, phases.timed(name, original))
    try:
        yield phases
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


def timed(fn: Callable[[], Any]) -> tuple[Any, Phase]:
    wall, cpu = time.monotonic(), time.process_time()
    value = fn()
    return value, Phase(time.monotonic() - wall, time.process_time() - cpu)


def publish_with_client(deps: Deps, users: dict[str, str | None], at: datetime) -> int:
    """The baseline's publishing: one ``PublisherClient.publish`` future per message (the
    client batches and flow-controls), as ``fan_out`` published before ``bulk_publish``."""
    topic = deps.topic_path(topology.USER_SYNC)
    futures = []
    for uid, version in users.items():
        sync = SyncRequest(uid, Reason.SCHEDULE, at, pulse_id="baseline", keys_version=version)
        futures.append(deps.publisher.publish(topic, sync.to_bytes(), **sync.attributes()))
    return sum(1 for f in futures if f.result(timeout=300))


def count_users(db: Any) -> int:
    """Users, by an aggregation (one read per 1,000): what the roster's member count replaced."""
    result: Any = db.collection(paths.USERS).count().get()
    return int(result[0][0].value)


def baseline(deps: Deps) -> dict[str, Phase]:
    """The design before the roster, on the same data: the eligibility scan and the count,
    then client-batched publishing."""
    db = deps.firestore
    users, scan = timed(lambda: roster.eligible_users(db))
    _, count = timed(lambda: count_users(db))
    _, publish = timed(lambda: publish_with_client(deps, users, datetime.now(UTC)))
    return {"scan": scan, "count": count, "publish": publish}


def tick() -> PubsubDelivery:
    return PubsubDelivery(f"scale-{uuid.uuid4().hex[:8]}", b"{}", {}, datetime.now(UTC), 1)


def run(n: int, seed_threads: int, profile: bool, with_baseline: bool) -> dict[str, Any]:
    project = f"scale-{uuid.uuid4().hex[:6]}"
    with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project=project) as hosts:
        os.environ.update({**hosts, "GOOGLE_CLOUD_PROJECT": project})
        import google.cloud.pubsub_v1 as pubsub_v1

        deps = Deps(Settings.from_env())
        subscriber = pubsub_v1.SubscriberClient()
        try:
            apply_topology(project, deps.publisher, subscriber)
        finally:
            subscriber.close()
        seed_s = seed(deps.firestore, n, seed_threads)
        print(
            f"seeded {n:,} tenants ({n * DOCS_PER_TENANT:,} documents) in {seed_s:.1f} s "
            f"({n * DOCS_PER_TENANT / seed_s:,.0f} documents/s, {seed_threads} threads)"
        )
        rebuilt, rebuild = timed(lambda: roster.rebuild(deps.firestore))
        print(
            f"roster rebuilt from a scan in {rebuild.wall_s:.1f} s "
            f"({len(rebuilt.eligible):,} eligible; once per deployment, not per tick)"
        )
        deps.firestore.document(paths.LAST_PULSE_DOC).get()  # connect outside the timing
        emulator_pids = [p for p in procstats.descendants(os.getpid()) if p != os.getpid()]
        before = {p: procstats.sample(p) for p in emulator_pids}
        with phases_of_fan_out() as phases:
            wall, cpu = time.monotonic(), time.process_time()
            result = fanout.fan_out(deps, tick())
            total = Phase(time.monotonic() - wall, time.process_time() - cpu)
        emulator_cpu = {}
        for pid, sample in before.items():
            after = procstats.sample(pid)
            if sample and after and after.cpu_seconds > sample.cpu_seconds:
                emulator_cpu[after.name] = after.cpu_seconds - sample.cpu_seconds
        figures: dict[str, Any] = {
            "tenants": n,
            "published": result.published,
            "phases": phases.by_name,
            "total": total,
            "emulator_cpu_s": emulator_cpu,
            "peak_rss_mb": (
                procstats.sample(os.getpid()) or procstats.ProcessSample(0, "", 0, 0)
            ).peak_rss_mb,
            "seed_s": seed_s,
            "rebuild": rebuild,
        }
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            fanout.fan_out(deps, tick())
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(20)
            stats.sort_stats("cumulative").print_stats(25)
            figures["profile"] = out.getvalue()
        if with_baseline:
            figures["baseline"] = baseline(deps)
        deps.publisher.stop()
        return figures


def report(figures: dict[str, Any]) -> None:
    n, total = figures["tenants"], figures["total"]
    phases: dict[str, Phase] = figures["phases"]
    serial = ("roster", "publish")
    other = Phase(
        total.wall_s - sum(phases.get(p, Phase()).wall_s for p in serial),
        total.cpu_s - sum(phases.get(p, Phase()).cpu_s for p in serial),
    )
    print(f"\nfan-out of one tick over {n:,} eligible tenants (published {figures['published']:,})")
    print(f"  {'phase':<44}{'wall s':>8}{'CPU s (this process)':>22}")
    for label, phase in (
        (f"read the roster ({paths.ROSTER_SHARDS} shards + marker)", phases.get("roster", Phase())),
        ("publish (bulk_publish, raw, 1,000/request)", phases.get("publish", Phase())),
        ("pulse docs, rollups", other),
        ("total fan_out", total),
    ):
        print(f"  {label:<44}{phase.wall_s:>8.2f}{phase.cpu_s:>22.2f}")
    verdict = "PASS" if total.wall_s < GOAL_SECONDS else "FAIL"
    print(f"  total {total.wall_s:.2f} s (goal < {GOAL_SECONDS:.0f} s): {verdict}")
    publish = phases.get("publish", Phase())
    if publish.wall_s:
        print(
            f"  messages/s: {n / publish.wall_s:,.0f} while publishing, "
            f"{n / total.wall_s:,.0f} over the whole fan-out"
        )
    print(f"  CPU of this process: {total.cpu_s:.2f} s ({total.cpu_s * 1e6 / n:.1f} µs/tenant)")
    for name, cpu in sorted(figures["emulator_cpu_s"].items()):
        print(f"  CPU of {name}: {cpu:.2f} s")
    print(f"  peak RSS of this process: {figures['peak_rss_mb']:.0f} MB")
    if "baseline" in figures:
        report_baseline(figures)
    if "profile" in figures:
        print("\ncProfile of a second fan-out (same data):\n" + figures["profile"])


def report_baseline(figures: dict[str, Any]) -> None:
    base: dict[str, Phase] = figures["baseline"]
    phases: dict[str, Phase] = figures["phases"]
    total = figures["total"]
    before = sum(p.wall_s for p in base.values())
    print("\nbaseline, same data: the design before the roster (scan, count, client publish)")
    print(f"  {'step':<40}{'wall s':>8}{'now s':>8}{'ratio':>8}")
    rows = (
        (
            "scan + count → roster read",
            Phase(base["scan"].wall_s + base["count"].wall_s),
            phases.get("roster", Phase()),
        ),
        ("client publish → bulk publish", base["publish"], phases.get("publish", Phase())),
        ("total", Phase(before), total),
    )
    for label, then, now in rows:
        ratio = then.wall_s / now.wall_s if now.wall_s else float("inf")
        print(f"  {label:<40}{then.wall_s:>8.2f}{now.wall_s:>8.2f}{ratio:>7.1f}×")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--seed-threads", type=int, default=4)
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile a second fan-out on the same data"
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the baseline (the scan and client publishing of the design before the roster)",
    )
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    report(run(args.tenants, args.seed_threads, args.profile, not args.no_baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
