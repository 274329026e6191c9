"""Pipeline benchmark: one pulse over N tenants at 100 ms simulated Alpaca latency, against the
emulators, the simulator (its own process) and ``sync_user`` under functions-framework (its own
process); and, on the same data, the single-loop design of the original spec.

Run with ``make bench`` (or ``python -m benchmarks.pipeline --sizes 1000,5000``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from agenttrader import paths, pulses
from agenttrader.alpaca import AlpacaClientFactory, fetch_account_state
from agenttrader.credentials import AlpacaKeys
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import Settings
from benchmarks import procstats
from benchmarks.metering import metered
from devtools import emulators
from devtools.localstack.stack import LocalStack
from publisher import roster
from sync_worker.worker import Result, SyncWorker

LATENCY_MS = 100
GOAL_TICK_SECONDS = 60.0
GOAL_RATIO_AT_1000 = 15.0
LOOP_SAMPLE = 100
"""Users the single loop walks for real; its total for N users is its measured rate × N."""
METER_SAMPLE = 100
WARMUP_TENANTS = 500
"""An unreported first pulse: the emulators are JVMs, slow until their JIT has run."""
GOAL_DUPLICATES = 0
PULSE_PUBLISHED_TIMEOUT_S = 120.0
OUTCOMES_TIMEOUT_S = 900.0
"""Per pulse, at least; a larger N gets 0.1 s per tenant (10,000 tenants: 1,000 s)."""


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.simulator",
            "--port",
            str(port),
            "--default-latency-ms",
            str(LATENCY_MS),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/_sim/stats", timeout=1)
            return process
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("simulator did not start")


def seed(db: firestore.Client, sim_url: str, n: int) -> list[str]:
    """N tenants, each with its own simulator account, onboarded, configured and enabled."""
    session = requests.Session()
    uids = []
    batch = db.batch()
    pending = 0
    for i in range(n):
        uid = f"bench-{i:06d}"
        tenant = session.post(f"{sim_url}/_sim/tenants", json={}, timeout=10).json()
        for path, body in (
            (paths.user_doc(uid), {"onboarded": True, "email": f"{uid}@example.com"}),
            (paths.alpaca_config_doc(uid), {"configured": True}),
            (paths.trading_status_doc(uid), {"enabled": True}),
            (
                paths.alpaca_secret_doc(uid),
                {
                    "key_id": tenant["key_id"],
                    "secret_key": tenant["secret_key"],
                    "base_url": sim_url,
                },
            ),
        ):
            batch.set(db.document(path), body)
            pending += 1
        uids.append(uid)
        if pending >= 400:
            batch.commit()
            batch, pending = db.batch(), 0
    if pending:
        batch.commit()
    return uids


def sim_calls(sim_url: str) -> int:
    return int(requests.get(f"{sim_url}/_sim/stats", timeout=10).json()["total"])


def run_pipeline(
    project: str, env: dict[str, str], sim_url: str, n: int, concurrency: int
) -> dict[str, Any]:
    os.environ.update(env)
    db = firestore.Client(project=project)
    seed(db, sim_url, n)
    # Seeded behind the triggers' back: build the roster now (as `agenttrader roster rebuild`
    # would), not inside the timed tick.
    roster.rebuild(db)
    calls_before = sim_calls(sim_url)
    stack_env = {**env, "THREADS": str(concurrency), "PULSE_ROLLUP_DELAY_SECONDS": "2"}
    log_dir = Path(tempfile.mkdtemp(prefix=f"agenttrader-bench-{n}-"))
    with LocalStack(
        project,
        stack_env,
        in_process=False,
        push_concurrency=concurrency,
        audit_kill_switch=False,
        log_dir=log_dir,
    ) as stack:
        assert stack.ticker is not None and stack.push_bridge is not None
        bridge = stack.push_bridge
        before = procstats.sample_tree()
        started = time.monotonic()
        tick_at = datetime.now(UTC)
        stack.ticker.tick()
        pulse_id = None
        while pulse_id is None and time.monotonic() - started < PULSE_PUBLISHED_TIMEOUT_S:
            last = db.document(paths.LAST_PULSE_DOC).get().to_dict() or {}
            pulse_id = last.get("pulse_id")
            time.sleep(0.2)
        if pulse_id is None:
            raise RuntimeError("the tick was not published")
        done = 0
        while time.monotonic() - started < max(OUTCOMES_TIMEOUT_S, n * 0.1):
            counts = pulses.count_outcomes(db, pulse_id)
            done = sum(counts.values())
            if done >= n:
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        after = procstats.sample_tree()
        stats = bridge.stats
        deliveries = {
            "delivered": stats.delivered,
            "acked": stats.acked,
            "nacked": stats.nacked,
            "duplicates": stats.duplicates,
            "pull_errors": stats.pull_errors,
        }
    synced_at = [
        (s.to_dict() or {}).get("syncedAt")
        for s in db.collection_group("data")
        .where(filter=FieldFilter("pulseId", "==", pulse_id))
        .stream()
    ]
    delays = sorted((t - tick_at).total_seconds() for t in synced_at if t is not None)
    if not delays:
        raise RuntimeError(f"no snapshot of pulse {pulse_id} was written; logs in {log_dir}")
    tick_to_last = delays[-1]
    return {
        "tenants": n,
        "synced": len(synced_at),
        "outcomes": done,
        "deliveries": deliveries,
        "worker_duplicates": worker_duplicates(log_dir / "sync_user.log"),
        "log_dir": str(log_dir),
        "tick_to_last_snapshot_s": round(tick_to_last, 2),
        "tick_to_snapshot_p50_p95_p99_s": [round(_percentile(delays, q), 1) for q in (50, 95, 99)],
        "synced_within_60_s": sum(1 for d in delays if d <= 60.0),
        "syncs_per_s": round(len(synced_at) / tick_to_last, 1),
        "alpaca_calls_per_sync": round(
            (sim_calls(sim_url) - calls_before) / max(len(synced_at), 1), 2
        ),
        "wall_s": round(wall, 1),
        "processes": [
            {
                "name": "bench (push bridge, ticker)" if pid == os.getpid() else a.name,
                "cpu_ms_per_sync": round(
                    (a.cpu_seconds - before[pid].cpu_seconds) * 1000 / max(len(synced_at), 1), 2
                ),
                "peak_rss_mb": round(a.peak_rss_mb),
            }
            for pid, a in sorted(after.items())
            if pid in before
        ],
    }


def worker_duplicates(log_file: Path) -> int:
    """Syncs that ``sync_user`` recognised as duplicates (and wrote nothing for), from its log."""
    wanted = f"sync {Result.DUPLICATE.value}"
    count = 0
    with log_file.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if wanted not in line or not line.startswith("{"):
                continue
            try:
                count += json.loads(line).get("message") == wanted
            except ValueError:
                continue
    return count


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


def run_single_loop(project: str, sim_url: str, n: int) -> dict[str, Any]:
    """The original design: one function walks every user in sequence."""
    db = firestore.Client(project=project)
    factory = AlpacaClientFactory(Settings.from_env().allowed_alpaca_base_urls, 10.0)
    uids = [f"bench-{i:06d}" for i in range(min(n, LOOP_SAMPLE))]
    started = time.monotonic()
    for uid in uids:
        trading = db.document(paths.trading_status_doc(uid)).get()
        if not (trading.to_dict() or {}).get("enabled"):
            continue
        keys = AlpacaKeys.from_document(db.document(paths.alpaca_secret_doc(uid)).get().to_dict())
        state = fetch_account_state(factory.for_user(keys), keys)
        db.document(paths.snapshot_doc(uid)).set(
            {"syncedAt": datetime.now(UTC), **state, "equity": state["account"]["equity"]},
            merge=True,
        )
    elapsed = time.monotonic() - started
    rate = len(uids) / elapsed
    return {"walked": len(uids), "syncs_per_s": round(rate, 2), "projected_s": round(n / rate, 1)}


def meter_worker(project: str, sim_url: str) -> dict[str, float]:
    """Firestore reads and writes per sync, counted in-process over a sample of syncs: scheduled
    messages, as a tick sends them, read on a worker that holds no keys yet (cold)."""
    deps = Deps(Settings.from_env())
    worker = SyncWorker(deps)
    uids = [f"bench-{i:06d}" for i in range(METER_SAMPLE)]
    now = datetime.now(UTC)
    with metered() as meter:
        for i, uid in enumerate(uids):
            request = SyncRequest(uid, Reason.SCHEDULE, now, pulse_id="meter")
            worker.handle(
                PubsubDelivery(f"meter-{i}", request.to_bytes(), request.attributes(), now, 1)
            )
    return {
        "reads_per_sync": round(meter.reads / len(uids), 2),
        "writes_per_sync": round(meter.writes / len(uids), 2),
    }


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _sizes(text: str) -> list[int]:
    sizes = [_positive(part.strip()) for part in text.split(",") if part.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one size, e.g. 1000,5000,10000")
    return sizes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default="1000,5000,10000",
        help="comma-separated tenant counts, one pulse each (e.g. 1000,5000,10000)",
    )
    parser.add_argument("--concurrency", type=_positive, default=128)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--warmup",
        type=int,
        default=WARMUP_TENANTS,
        help="tenants of an unreported first pulse that warms the emulators' JVMs up, so the"
        " first size is not measured on cold ones (0: none; default %(default)s)",
    )
    args = parser.parse_args(argv)
    sizes: list[int] = args.sizes
    results: list[dict[str, Any]] = []
    sim_port = emulators.free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; Alpaca latency {LATENCY_MS} ms; "
        f"push concurrency {args.concurrency}"
    )
    with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project="bench") as hosts:
        simulator = start_simulator(sim_port)
        try:
            if args.warmup:
                warm_env = {**hosts, "GOOGLE_CLOUD_PROJECT": "bench-warmup"}
                os.environ.update({**warm_env, "ALPACA_ALLOWED_BASE_URLS": sim_url})
                run_pipeline(
                    "bench-warmup",
                    {**warm_env, "ALPACA_ALLOWED_BASE_URLS": sim_url},
                    sim_url,
                    args.warmup,
                    args.concurrency,
                )
                print(f"(warm-up pulse of {args.warmup:,} tenants done; not reported)")
            for n in sizes:
                project = f"bench-{n}-{uuid.uuid4().hex[:6]}"
                env = {
                    **hosts,
                    "GOOGLE_CLOUD_PROJECT": project,
                    "ALPACA_ALLOWED_BASE_URLS": sim_url,
                }
                os.environ.update(env)
                pipeline = run_pipeline(project, env, sim_url, n, args.concurrency)
                loop = run_single_loop(project, sim_url, n)
                meter = meter_worker(project, sim_url)
                ratio = pipeline["syncs_per_s"] / loop["syncs_per_s"]
                result = {**pipeline, **meter, "single_loop": loop, "ratio": round(ratio, 1)}
                results.append(result)
                print(f"\nN = {n:,} tenants")
                print(
                    f"  tick → last snapshot   {pipeline['tick_to_last_snapshot_s']:>8.1f} s   "
                    f"(goal ≤ {GOAL_TICK_SECONDS:.0f} s; single loop: {loop['projected_s']:.0f} s "
                    f"projected from {loop['walked']} users walked)"
                )
                print(
                    f"  syncs per second       {pipeline['syncs_per_s']:>8.1f}     "
                    f"(single loop {loop['syncs_per_s']:.2f}; ratio {ratio:.1f}×, goal ≥ "
                    f"{GOAL_RATIO_AT_1000:.0f}× at 1,000)"
                )
                print(
                    f"  Firestore reads/sync   {meter['reads_per_sync']:>8.2f}     "
                    f"writes/sync {meter['writes_per_sync']:.2f} (sample of {METER_SAMPLE})"
                )
                p50, p95, p99 = pipeline["tick_to_snapshot_p50_p95_p99_s"]
                print(
                    f"  tick → snapshot        p50 {p50:.1f} s · p95 {p95:.1f} s · p99 {p99:.1f} s"
                    f"   synced within 60 s: {pipeline['synced_within_60_s']:,} of {n:,}"
                )
                print(f"  Alpaca calls/sync      {pipeline['alpaca_calls_per_sync']:>8.2f}")
                d = pipeline["deliveries"]
                print(
                    f"  duplicate deliveries   {d['duplicates']:>8,}     (goal {GOAL_DUPLICATES}; "
                    f"push bridge: {d['delivered']:,} deliveries, acked {d['acked']:,}, "
                    f"nacked {d['nacked']:,}, failed pulls {d['pull_errors']:,}; sync_user saw "
                    f"{pipeline['worker_duplicates']:,} duplicates)"
                )
                total_cpu = sum(p["cpu_ms_per_sync"] for p in pipeline["processes"])
                print(
                    f"  CPU per sync           {total_cpu:>8.1f} ms  (all processes; by process:)"
                )
                for proc in pipeline["processes"]:
                    if proc["cpu_ms_per_sync"] >= 0.05:
                        print(
                            f"      {proc['name']:<28} {proc['cpu_ms_per_sync']:>7.2f} ms/sync"
                            f"   peak RSS {proc['peak_rss_mb']:>5} MB"
                        )
                print(
                    f"  synced {pipeline['synced']:,} of {n:,}; "
                    f"outcomes counted {pipeline['outcomes']:,}; function logs in "
                    f"{pipeline['log_dir']}"
                )
        finally:
            simulator.terminate()
            simulator.wait(timeout=10)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
