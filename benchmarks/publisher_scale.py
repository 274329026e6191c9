"""Publisher at scale: one tick's fan-out over N eligible tenants against the emulators.

For each N (by default 100,000 and 1,000,000, each on fresh emulators) it seeds the roster the
way the triggers leave it — the marker ``ops/roster`` with the shard count the roster grows to
for N users, and every shard document with its users' entries and keys versions, written
directly rather than by N trigger runs — then runs :func:`publisher.tick.fan_out` once, in a
process of its own (the publisher's memory is that process's peak RSS), and times its phases:
reading the roster, publishing (``bulk_publish``), the roster's upkeep, and the rest (pulse
documents, rollups). The emulators' CPU over the fan-out is measured beside the publisher's:
on this machine they share its two cores. Only the publisher is measured: ``user-sync`` has
no subscriber that is fed here (the Pub/Sub emulator keeps every message).

With ``--streaming F`` a fraction F of the tenants has a live trade-update stream: the 64
bucket documents list them under one live gateway session (written last, so its lease holds
through the tick), and the tick reads them and publishes to a streaming tenant once in
``RECONCILE_EVERY_TICKS``.

With ``--baseline`` (sensible up to ~100,000) it also seeds the documents eligibility is decided
from and times the design before the roster on them (two collection-group scans, the count,
one client ``publish`` future per message).

    python -m benchmarks.publisher_scale --tenants 100000,1000000 [--streaming 0.95]
        [--profile] [--baseline]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.cloud import firestore

from agenttrader import paths, topology
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import Reason, SyncRequest
from agenttrader.roster_layout import shard_of, shards_for
from agenttrader.roster_verdict import ELIGIBLE, entry, micros
from agenttrader.settings import Settings
from agenttrader.streams import HOLDER, LIVE, RENEWED_AT, bucket_of
from benchmarks import procstats
from devtools import emulators
from devtools.topology import apply_topology
from publisher import roster
from publisher import tick as fanout

GOAL_SECONDS = 60.0
"""One tick's fan-out at 1,000,000 tenants (issue 13)."""
REFERENCE = (100_000, 5.83)
"""The fan-out before the roster grew (32 shards), 2026-11-27: the figure this one replaces."""
BATCH_WRITES = 500
"""Firestore's limit of writes per commit."""
DOCS_PER_TENANT = 3
CONFIGURED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def uid_of(i: int) -> str:
    """28 characters, the length of a Firebase uid, so message sizes are realistic."""
    return f"tenant-{i:07d}-{'x' * 13}"


def seed_roster(db: Any, n: int, threads: int) -> tuple[int, float]:
    """The roster of N eligible tenants, as the triggers leave it; returns its shard count and
    the seconds the writes took."""
    shards = shards_for(n)
    read_at = entry(datetime.now(UTC), ELIGIBLE)
    version = micros(CONFIGURED_AT)
    members: list[dict[str, int]] = [{} for _ in range(shards)]
    for i in range(n):
        uid = uid_of(i)
        members[shard_of(uid, shards)][uid] = read_at

    def write(shard: int) -> None:
        entries = members[shard]
        db.document(paths.roster_shard_doc(shard)).set(
            {"members": entries, "keys": dict.fromkeys(entries, version)}
        )

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(write, range(shards)))
    db.document(paths.ROSTER_DOC).set({"built_at": datetime.now(UTC), "shards": shards, "users": n})
    return shards, time.monotonic() - started


BENCH_SESSION = "publisher-scale"


def seed_streams(db: Any, n: int, fraction: float) -> int:
    """A live stream for the first ``fraction`` of the N tenants, as a gateway leaves them:
    the buckets' live maps, then the session holding every bucket, renewed now. Returns how
    many tenants stream."""
    streaming = int(n * fraction)
    live: list[dict[str, int]] = [{} for _ in range(paths.STREAM_BUCKETS)]
    since = micros(datetime.now(UTC))
    for i in range(streaming):
        uid = uid_of(i)
        live[bucket_of(uid)][uid] = since
    for bucket, entries in enumerate(live):
        db.document(paths.stream_bucket_doc(bucket)).set({HOLDER: BENCH_SESSION, LIVE: entries})
    db.document(paths.stream_session_doc(BENCH_SESSION)).set(
        {RENEWED_AT: firestore.SERVER_TIMESTAMP}
    )
    return streaming


def seed_documents(db: Any, n: int, threads: int) -> float:
    """The documents eligibility is decided from, for the baseline's scan; returns seconds."""
    per_batch = BATCH_WRITES // DOCS_PER_TENANT

    def commit(start: int) -> None:
        batch = db.batch()
        for i in range(start, min(start + per_batch, n)):
            uid = uid_of(i)
            batch.set(db.document(paths.user_doc(uid)), {"onboarded": True})
            batch.set(
                db.document(paths.alpaca_config_doc(uid)),
                {"configured": True, "configuredAt": CONFIGURED_AT},
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
    wrapped = [
        (roster, "load", "roster"),
        (fanout, "_publish", "publish"),
        (roster, "maintain", "upkeep"),
    ]
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


def tick() -> PubsubDelivery:
    return PubsubDelivery(f"scale-{uuid.uuid4().hex[:8]}", b"{}", {}, datetime.now(UTC), 1)


# --- the publisher, in a process of its own -------------------------------------------------


def publisher_process(profile: bool) -> dict[str, Any]:
    """One ``fan_out`` in this process (the emulators' hosts and the project in the
    environment); its figures, and this process's peak RSS before and after."""
    deps = Deps(Settings.from_env())
    deps.firestore.document(paths.LAST_PULSE_DOC).get()  # connect outside the timing
    before = procstats.sample(os.getpid())
    with phases_of_fan_out() as phases:
        wall, cpu = time.monotonic(), time.process_time()
        result = fanout.fan_out(deps, tick())
        total = Phase(time.monotonic() - wall, time.process_time() - cpu)
    after = procstats.sample(os.getpid())
    figures: dict[str, Any] = {
        "published": result.published,
        "phases": {name: asdict(phase) for name, phase in phases.by_name.items()},
        "total": asdict(total),
        "rss_before_mb": before.peak_rss_mb if before else 0.0,
        "peak_rss_mb": after.peak_rss_mb if after else 0.0,
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
    deps.publisher.stop()
    return figures


def run_publisher(env: dict[str, str], profile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.publisher_scale",
            "--publisher-process",
            str(out),
        ]
        if profile:
            command.append("--profile")
        done = subprocess.run(
            command, env={**os.environ, **env}, capture_output=True, text=True, check=False
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"the publisher process failed:\n{done.stderr[-4000:]}")
        figures: dict[str, Any] = json.loads(out.read_text())
    return figures


# --- the baseline: the design before the roster ----------------------------------------------


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


# --- one size --------------------------------------------------------------------------------


def run(
    n: int, seed_threads: int, profile: bool, with_baseline: bool, streaming: float = 0.0
) -> dict[str, Any]:
    project = f"scale-{uuid.uuid4().hex[:6]}"
    with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project=project) as hosts:
        env = {**hosts, "GOOGLE_CLOUD_PROJECT": project}
        os.environ.update(env)
        import google.cloud.pubsub_v1 as pubsub_v1

        deps = Deps(Settings.from_env())
        subscriber = pubsub_v1.SubscriberClient()
        try:
            apply_topology(project, deps.publisher, subscriber)
        finally:
            subscriber.close()
        shards, seed_s = seed_roster(deps.firestore, n, seed_threads)
        print(
            f"\n{n:,} tenants: roster seeded in {seed_s:.1f} s ({shards:,} shards + the marker, "
            f"{n / shards:,.0f} users a shard)",
            flush=True,
        )
        streamed = seed_streams(deps.firestore, n, streaming) if streaming else 0
        if streamed:
            print(f"{streamed:,} of them streaming (64 bucket documents, one live session)")
        emulator_pids = [p for p in procstats.descendants(os.getpid()) if p != os.getpid()]
        before = {p: procstats.sample(p) for p in emulator_pids}
        load_before = os.getloadavg()[0]
        figures = run_publisher(env, profile)
        figures["load"] = (load_before, os.getloadavg()[0])
        emulator_cpu = {}
        for pid, sample in before.items():
            after = procstats.sample(pid)
            if sample and after and after.cpu_seconds > sample.cpu_seconds:
                emulator_cpu[after.name] = after.cpu_seconds - sample.cpu_seconds
        figures.update(
            tenants=n, shards=shards, emulator_cpu_s=emulator_cpu, seed_s=seed_s, streaming=streamed
        )
        if with_baseline:
            seeded = seed_documents(deps.firestore, n, seed_threads)
            print(f"baseline: {n * DOCS_PER_TENANT:,} documents seeded in {seeded:.1f} s")
            figures["baseline"] = {k: asdict(v) for k, v in baseline(deps).items()}
        deps.publisher.stop()
        return figures


def _phase(raw: dict[str, float] | None) -> Phase:
    return Phase(**raw) if raw else Phase()


def report(figures: dict[str, Any]) -> None:
    n, total = figures["tenants"], _phase(figures["total"])
    phases = {name: _phase(raw) for name, raw in figures["phases"].items()}
    named = ("roster", "publish", "upkeep")
    other = Phase(
        total.wall_s - sum(phases.get(p, Phase()).wall_s for p in named),
        total.cpu_s - sum(phases.get(p, Phase()).cpu_s for p in named),
    )
    streaming = figures.get("streaming", 0)
    print(
        f"fan-out of one tick over {n:,} eligible tenants (published {figures['published']:,}"
        + (f"; {streaming:,} streaming, reconciled once in 5 ticks)" if streaming else ")")
    )
    print(f"  {'phase':<48}{'wall s':>8}{'CPU s (publisher)':>20}")
    for label, phase in (
        (f"read the roster ({figures['shards']:,} shards + marker)", phases.get("roster", Phase())),
        ("publish (bulk_publish, raw, 1,000/request)", phases.get("publish", Phase())),
        ("roster upkeep (survey; nothing to move)", phases.get("upkeep", Phase())),
        ("pulse docs, rollups", other),
        ("total fan_out", total),
    ):
        print(f"  {label:<48}{phase.wall_s:>8.2f}{phase.cpu_s:>20.2f}")
    publish = phases.get("publish", Phase())
    if publish.wall_s:
        print(
            f"  messages/s: {n / publish.wall_s:,.0f} while publishing, "
            f"{n / total.wall_s:,.0f} over the whole fan-out"
        )
    print(f"  CPU of the publisher: {total.cpu_s:.2f} s ({total.cpu_s * 1e6 / n:.1f} µs/tenant)")
    for name, cpu in sorted(figures["emulator_cpu_s"].items()):
        print(f"  CPU of {name} over the same fan-out: {cpu:.2f} s")
    print(
        f"  peak RSS of the publisher: {figures['peak_rss_mb']:.0f} MB "
        f"({figures['rss_before_mb']:.0f} MB before the tick)"
    )
    before, after = figures["load"]
    print(
        f"  machine load (1-minute average, {os.cpu_count()} CPUs): {before:.1f} before, "
        f"{after:.1f} after (above the CPU count: other work shared the cores)"
    )
    if "baseline" in figures:
        report_baseline(figures)
    if "profile" in figures:
        print("\ncProfile of a second fan-out (same data):\n" + figures["profile"])


def report_baseline(figures: dict[str, Any]) -> None:
    base = {k: _phase(v) for k, v in figures["baseline"].items()}
    phases = {name: _phase(raw) for name, raw in figures["phases"].items()}
    total = _phase(figures["total"])
    before = sum(p.wall_s for p in base.values())
    print("  baseline, same tenants: the design before the roster (scan, count, client publish)")
    print(f"    {'step':<40}{'wall s':>8}{'now s':>8}{'ratio':>8}")
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
        print(f"    {label:<40}{then.wall_s:>8.2f}{now.wall_s:>8.2f}{ratio:>7.1f}×")


def summary(runs: list[dict[str, Any]]) -> None:
    """Every size beside the reference figure and the goal."""
    ref_n, ref_s = REFERENCE
    print(f"\nsummary (reference: {ref_n:,} tenants in {ref_s:.2f} s with 32 fixed shards)")
    print(
        f"  {'tenants':>10}{'shards':>8}{'fan-out s':>11}{'publisher CPU s':>17}{'peak RSS MB':>13}"
    )
    for f in runs:
        total = _phase(f["total"])
        print(
            f"  {f['tenants']:>10,}{f['shards']:>8,}{total.wall_s:>11.2f}{total.cpu_s:>17.2f}"
            f"{f['peak_rss_mb']:>13.0f}"
        )
    largest = max(runs, key=lambda f: f["tenants"])
    wall = _phase(largest["total"]).wall_s
    verdict = "PASS" if wall < GOAL_SECONDS else "FAIL"
    print(
        f"  {largest['tenants']:,} tenants: {wall:.2f} s (goal < {GOAL_SECONDS:.0f} s): {verdict}"
    )


def _sizes(text: str) -> list[int]:
    sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("one or more positive numbers, comma-separated")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tenants", type=_sizes, default=[100_000, 1_000_000])
    parser.add_argument("--seed-threads", type=int, default=4)
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile a second fan-out on the same data"
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also time the design before the roster (seeds 3 documents per tenant)",
    )
    parser.add_argument(
        "--streaming",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of the tenants with a live trade-update stream (0-1)",
    )
    parser.add_argument("--publisher-process", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.publisher_process:
        Path(args.publisher_process).write_text(json.dumps(publisher_process(args.profile)))
        return 0
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    runs = []
    for n in sorted(args.tenants):
        figures = run(n, args.seed_threads, args.profile, args.baseline, args.streaming)
        report(figures)
        runs.append(figures)
    summary(runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
