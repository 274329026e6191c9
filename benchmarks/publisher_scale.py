"""Publisher at scale: one tick's fan-out over N eligible tenants against the emulators.

Seeds N tenants with only the documents the publisher reads (``users/{uid}`` for the count,
``config/alpaca {configured, configuredAt}`` and ``status/trading {enabled}`` for eligibility),
then runs :func:`agenttrader.fanout.fan_out` once and times its phases: enumerating the
eligible users, counting the users, publishing the messages (batched and flow-controlled by
the client ``Deps`` builds), and the rest (pulse documents, rollups). Only the publisher is
measured: ``user-sync`` has no subscriber that is fed here.

    python -m benchmarks.publisher_scale --tenants 100000 [--profile] [--experiments]

``--experiments`` then measures, on the same data, the changes proposed to ``fanout.py``
without making them: the two eligibility queries and the count run concurrently; a roster
(eligible uids with their keys' version in a few shard documents, which triggers on
``config/alpaca`` and ``status/trading`` would maintain) read instead of the scan; and the
messages published as raw protobufs, 1,000 per request, from a few threads.
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

from agenttrader import emulators, fanout, paths, topology
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import Settings
from benchmarks import procstats

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
    """Time ``fanout``'s phases by wrapping the module functions ``fan_out`` calls."""
    phases = Phases()
    names = {"eligible_users": "enumerate", "count_users": "count", "_publish": "publish"}
    originals = {attr: getattr(fanout, attr) for attr in names}
    for attr, name in names.items():
        setattr(fanout, attr, phases.timed(name, originals[attr]))
    try:
        yield phases
    finally:
        for attr, original in originals.items():
            setattr(fanout, attr, original)


ROSTER_SHARD_TENANTS = 10_000
"""About 450 KB of ``uid version`` lines per shard: well inside Firestore's 1 MiB document."""
PUBLISH_PER_REQUEST = 1_000
"""Pub/Sub's maximum number of messages in one publish request."""
PUBLISH_THREADS = 4


def timed(fn: Callable[[], Any]) -> tuple[Any, Phase]:
    wall, cpu = time.monotonic(), time.process_time()
    value = fn()
    return value, Phase(time.monotonic() - wall, time.process_time() - cpu)


def enumerate_concurrently(db: Any) -> tuple[dict[str, str | None], int]:
    """The same two eligibility queries and the count as ``fan_out``, run side by side."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        configured = pool.submit(fanout.configured_users, db)
        enabled = pool.submit(fanout.enabled_uids, db)
        count = pool.submit(fanout.count_users, db)
        versions = configured.result()
        eligible = {uid: versions[uid] for uid in sorted(versions.keys() & enabled.result())}
        return eligible, count.result()


def roster_shard_doc(k: int) -> str:
    return f"{paths.OPS}/roster/shards/{k:04d}"


def write_roster(db: Any, users: dict[str, str | None]) -> int:
    """What the triggers would maintain: ``uid version`` lines, a shard per 10,000 users."""
    uids = sorted(users)
    shards = 0
    for shards, start in enumerate(range(0, len(uids), ROSTER_SHARD_TENANTS), start=1):
        lines = (f"{u} {users[u] or ''}" for u in uids[start : start + ROSTER_SHARD_TENANTS])
        db.document(roster_shard_doc(shards - 1)).set(
            {
                "entries": "\n".join(lines).encode(),
                "count": min(ROSTER_SHARD_TENANTS, len(uids) - start),
            }
        )
    return shards


def read_roster(db: Any, shards: int) -> tuple[dict[str, str | None], int]:
    users: dict[str, str | None] = {}
    total = 0
    for snapshot in db.get_all([db.document(roster_shard_doc(k)) for k in range(shards)]):
        data = snapshot.to_dict() or {}
        total += int(data.get("count", 0))
        for line in bytes(data["entries"]).decode().splitlines():
            uid, _, version = line.partition(" ")
            users[uid] = version or None
    return users, total


def publish_raw(deps: Deps, users: dict[str, str | None], pulse_id: str, at: datetime) -> int:
    """The same messages as ``fanout._publish``, as raw protobufs, 1,000 per publish request
    (Pub/Sub's maximum), from a few threads: no per-message future, no batching thread."""
    from google.pubsub_v1.services.publisher.client import PublisherClient as Gapic
    from google.pubsub_v1.types import PublishRequest, PubsubMessage

    topic = deps.topic_path(topology.USER_SYNC)
    message = PubsubMessage.pb()
    items = list(users.items())

    def send(start: int) -> int:
        request = PublishRequest.pb()(topic=topic)
        for uid, version in items[start : start + PUBLISH_PER_REQUEST]:
            sync = SyncRequest(uid, Reason.SCHEDULE, at, pulse_id=pulse_id, keys_version=version)
            request.messages.append(message(data=sync.to_bytes(), attributes=sync.attributes()))
        response = Gapic.publish(deps.publisher, request=PublishRequest.wrap(request))
        return len(response.message_ids)

    with concurrent.futures.ThreadPoolExecutor(max_workers=PUBLISH_THREADS) as pool:
        return sum(pool.map(send, range(0, len(items), PUBLISH_PER_REQUEST)))


def experiments(deps: Deps) -> dict[str, Any]:
    db = deps.firestore
    (eligible, count), concurrent_enum = timed(lambda: enumerate_concurrently(db))
    shards = write_roster(db, eligible)
    (roster, roster_count), roster_read = timed(lambda: read_roster(db, shards))
    if roster != eligible or not roster_count == count == len(eligible):
        raise RuntimeError("the roster does not hold what the scan found")
    published, raw_publish = timed(
        lambda: publish_raw(deps, roster, "experiment-pulse", datetime.now(UTC))
    )
    if published != len(roster):
        raise RuntimeError(f"published {published} of {len(roster)}")
    return {
        "concurrent_enumeration": concurrent_enum,
        "roster_shards": shards,
        "roster_read": roster_read,
        "raw_publish": raw_publish,
    }


def tick() -> PubsubDelivery:
    return PubsubDelivery(f"scale-{uuid.uuid4().hex[:8]}", b"{}", {}, datetime.now(UTC), 1)


def run(n: int, seed_threads: int, profile: bool, experiment: bool) -> dict[str, Any]:
    project = f"scale-{uuid.uuid4().hex[:6]}"
    with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project=project) as hosts:
        os.environ.update({**hosts, "GOOGLE_CLOUD_PROJECT": project})
        import google.cloud.pubsub_v1 as pubsub_v1

        deps = Deps(Settings.from_env())
        subscriber = pubsub_v1.SubscriberClient()
        try:
            topology.apply(project, deps.publisher, subscriber)
        finally:
            subscriber.close()
        seed_s = seed(deps.firestore, n, seed_threads)
        print(
            f"seeded {n:,} tenants ({n * DOCS_PER_TENANT:,} documents) in {seed_s:.1f} s "
            f"({n * DOCS_PER_TENANT / seed_s:,.0f} documents/s, {seed_threads} threads)"
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
        if experiment:
            figures["experiments"] = experiments(deps)
        deps.publisher.stop()
        return figures


def report(figures: dict[str, Any]) -> None:
    n, total = figures["tenants"], figures["total"]
    phases: dict[str, Phase] = figures["phases"]
    other = Phase(
        total.wall_s - sum(p.wall_s for p in phases.values()),
        total.cpu_s - sum(p.cpu_s for p in phases.values()),
    )
    print(f"\nfan-out of one tick over {n:,} eligible tenants (published {figures['published']:,})")
    print(f"  {'phase':<34}{'wall s':>8}{'CPU s (this process)':>22}")
    for label, phase in (
        ("enumerate (eligible_users)", phases.get("enumerate", Phase())),
        ("count users (count_users)", phases.get("count", Phase())),
        ("publish (_publish)", phases.get("publish", Phase())),
        ("pulse docs, rollups (rest)", other),
        ("total fan_out", total),
    ):
        print(f"  {label:<34}{phase.wall_s:>8.2f}{phase.cpu_s:>22.2f}")
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
    if "experiments" in figures:
        report_experiments(figures)
    if "profile" in figures:
        print("\ncProfile of a second fan-out (same data):\n" + figures["profile"])


def report_experiments(figures: dict[str, Any]) -> None:
    x, n = figures["experiments"], figures["tenants"]
    phases: dict[str, Phase] = figures["phases"]
    print("\nproposed changes to fanout.py, measured on the same data (not made):")
    rows = (
        ("scan: 2 queries + count, as now", _sum(phases, "enumerate", "count")),
        ("scan: 2 queries + count concurrently", x["concurrent_enumeration"]),
        (f"roster: get_all of {x['roster_shards']} shard documents", x["roster_read"]),
        ("publish: as now (client batching)", phases.get("publish", Phase())),
        (
            f"publish: raw, {PUBLISH_PER_REQUEST}/request, {PUBLISH_THREADS} threads",
            x["raw_publish"],
        ),
    )
    print(f"  {'variant':<48}{'wall s':>8}{'CPU s':>8}")
    for label, phase in rows:
        print(f"  {label:<48}{phase.wall_s:>8.2f}{phase.cpu_s:>8.2f}")
    best = x["roster_read"].wall_s + x["raw_publish"].wall_s
    verdict = "PASS" if best < GOAL_SECONDS else "FAIL"
    print(
        f"  roster + raw publish: {best:.2f} s for {n:,} tenants "
        f"(goal < {GOAL_SECONDS:.0f} s, before pulse documents and rollups): {verdict}"
    )


def _sum(phases: dict[str, Phase], *names: str) -> Phase:
    chosen = [phases.get(name, Phase()) for name in names]
    return Phase(sum(p.wall_s for p in chosen), sum(p.cpu_s for p in chosen))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--seed-threads", type=int, default=4)
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile a second fan-out on the same data"
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="also measure the changes proposed to fanout.py (see the module docstring)",
    )
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    report(run(args.tenants, args.seed_threads, args.profile, args.experiments))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
