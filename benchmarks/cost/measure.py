"""Measuring the figures :mod:`benchmarks.cost.model` prices, on the design as it runs.

:func:`measure` runs the code against fresh Pub/Sub and Firestore emulators and an in-process
Alpaca simulator (100 ms per request), over a sample of tenants, with
``SYNC_SCHEDULE=market-hours``: Firestore operations counted in this process (:func:`counted`),
log lines through the ``agenttrader`` loggers, bytes sent to Alpaca over Python sockets,
message sizes as ``bulk_publish`` sends them (:class:`RecordingPublisher`). :func:`inputs_from`
turns its figures into the model's inputs. Nothing starts at import. ``docs/COST.md`` lists
what it measures.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.cost.model import LoopWorkload, Workload

LATENCY_MS = 100
ROSTER_REFRESH_SAMPLE = 10
ASK_SAMPLE = 10


@dataclass
class Ops:
    reads: int = 0
    writes: int = 0
    """Writes other than deletes."""
    deletes: int = 0

    def per(self, n: int) -> dict[str, float]:
        return {k: v / n for k, v in asdict(self).items()}


def _request(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return kwargs.get("request", args[0] if args else None)


def _field(request: Any, name: str) -> Any:
    return request[name] if isinstance(request, Mapping) else getattr(request, name)


@contextmanager
def counted() -> Iterator[Ops]:
    """Firestore operations of this process, as billed, counted where every path of the
    client meets (its transport, ``FirestoreClient``), so that code calling the transport
    directly (the roster's read) counts too: a read per document a batched get asks for, per
    document a query streams or a listing returns and per aggregation query (up to 1,000 index
    entries); a write or a delete per ``Write`` of a commit."""
    from google.cloud.firestore_v1 import collection, query
    from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

    ops = Ops()
    lock = threading.Lock()

    def add(reads: int = 0, writes: int = 0, deletes: int = 0) -> None:
        with lock:
            ops.reads += reads
            ops.writes += writes
            ops.deletes += deletes

    def batch_get(original: Any) -> Any:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            add(reads=len(_field(_request(args, kwargs), "documents")))
            return original(self, *args, **kwargs)

        return wrapped

    def commit(original: Any) -> Any:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            writes = _field(_request(args, kwargs), "writes")
            operations = [getattr(w, "_pb", w).WhichOneof("operation") for w in writes]
            deletes = operations.count("delete")
            add(writes=len(operations) - deletes, deletes=deletes)
            return original(self, *args, **kwargs)

        return wrapped

    def aggregation(original: Any) -> Any:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            add(reads=1)
            return original(self, *args, **kwargs)

        return wrapped

    def per_item(original: Any) -> Any:
        """A read per document a query streams or a listing returns."""

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            for item in original(self, *args, **kwargs):
                add(reads=1)
                yield item

        return wrapped

    patches = [
        (collection.CollectionReference, "list_documents", per_item),
        (FirestoreClient, "batch_get_documents", batch_get),
        (FirestoreClient, "commit", commit),
        (FirestoreClient, "run_aggregation_query", aggregation),
        (query.Query, "stream", per_item),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, wrapper in patches:
        setattr(owner, name, wrapper(getattr(owner, name)))
    try:
        yield ops
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


@contextmanager
def bytes_sent_to(port: int) -> Iterator[list[int]]:
    """Bytes this process sends over Python sockets to ``port`` (urllib3 uses them; gRPC and
    the in-process simulator's server side do not count). ``[bytes, connections]``."""
    import socket

    counts = [0, 0]
    original_sendall, original_connect = socket.socket.sendall, socket.socket.connect

    def to_port(sock: socket.socket) -> bool:
        try:
            return bool(sock.getpeername()[1] == port)
        except (OSError, IndexError, TypeError):
            return False

    def sendall(self: socket.socket, data: Any, *args: Any) -> Any:
        if to_port(self):
            counts[0] += len(data)
        return original_sendall(self, data, *args)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[1] == port:
            counts[1] += 1
        return original_connect(self, address)

    socket.socket.sendall = sendall  # type: ignore[method-assign,assignment]
    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    try:
        yield counts
    finally:
        socket.socket.sendall = original_sendall  # type: ignore[method-assign,assignment]
        socket.socket.connect = original_connect  # type: ignore[method-assign,assignment]


LOGGING_PACKAGES = ("agenttrader", "publisher", "sync_worker", "signal_worker", "accounts")
"""Where the backend's loggers live (``get_logger(__name__)``: one logger tree a package)."""


@contextmanager
def log_bytes() -> Iterator[list[int]]:
    """Bytes of the Cloud Logging JSON lines the backend's loggers write, at INFO."""
    import logging

    from agenttrader.logs import CloudLoggingFormatter

    counts = [0, 0]

    class Counting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            counts[0] += len(self.format(record).encode()) + 1
            counts[1] += 1

    handler = Counting()
    handler.setFormatter(CloudLoggingFormatter())
    loggers = [logging.getLogger(name) for name in LOGGING_PACKAGES]
    saved = [(logger.level, logger.propagate) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield counts
    finally:
        for logger, (level, propagate) in zip(loggers, saved, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def message_size(data: bytes, attributes: Mapping[str, str]) -> int:
    """What Pub/Sub bills of a message besides its timestamp and id: data and attributes."""
    return len(data) + sum(len(k) + len(v) for k, v in attributes.items())


class _RecordingApi:
    """The publisher's transport (``PublisherClient.api``), recording each message of the
    raw publish requests ``bulk_publish`` sends through it."""

    def __init__(self, real: Any, sizes: list[int]) -> None:
        self._real = real
        self._sizes = sizes

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        request = kwargs.get("request", args[0] if args else None)
        for message in getattr(request, "messages", ()):
            self._sizes.append(message_size(message.data, dict(message.attributes)))
        return self._real.publish(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class RecordingPublisher:
    """The real publisher, recording the size of each message published through it: the
    client's ``publish`` (the clock-asking message) and its ``api.publish`` (every other)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.sizes: list[int] = []
        self.api = _RecordingApi(real.api, self.sizes)

    def publish(self, topic: str, data: bytes, **attributes: str) -> Any:
        self.sizes.append(message_size(data, attributes))
        return self._real.publish(topic, data, **attributes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def uid_of(i: int) -> str:
    """``benchmarks.pipeline``'s uids, so its single loop walks these tenants."""
    return f"bench-{i:06d}"


CONFIGURED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def seed(db: Any, sim: Any, uids: Sequence[str]) -> dict[str, str]:
    """Configured, enabled tenants with keys of their own simulator account; uid → key id."""
    from agenttrader import paths

    key_ids = {}
    batch = db.batch()
    for uid in uids:
        tenant = sim.add_tenant()
        key_ids[uid] = tenant.key_id
        keys = {"key_id": tenant.key_id, "secret_key": tenant.secret_key, "base_url": sim.base_url}
        batch.set(db.document(paths.user_doc(uid)), {"onboarded": True})
        batch.set(
            db.document(paths.alpaca_config_doc(uid)),
            {"configured": True, "configuredAt": CONFIGURED_AT},
        )
        batch.set(db.document(paths.trading_status_doc(uid)), {"enabled": True})
        batch.set(db.document(paths.alpaca_secret_doc(uid)), keys)
    batch.commit()
    return key_ids


def tick(at: datetime) -> Any:
    from agenttrader.events import PubsubDelivery

    return PubsubDelivery(f"cost-{uuid.uuid4().hex[:8]}", b"{}", {}, at, 1)


def store_clock(db: Any, *, is_open: bool) -> None:
    """A fresh ``ops/market_clock``: open until an hour from now, or closed for an hour."""
    from agenttrader.market_clock import MarketClock
    from agenttrader.paths import MARKET_CLOCK_DOC

    now = datetime.now(UTC)
    clock = MarketClock(
        is_open=is_open,
        next_open=now + timedelta(hours=1 if not is_open else 18),
        next_close=now + timedelta(hours=1 if is_open else 7),
        checked_at=now,
    )
    db.document(MARKET_CLOCK_DOC).set(clock.to_document())


def measure_roster(db: Any, uids: Sequence[str]) -> dict[str, Any]:
    """The one-off rebuild from a scan (per tenant), what one trigger run costs, and what a
    tick's upkeep costs when it drops a tombstone past the horizon."""
    from agenttrader import paths
    from agenttrader.roster_layout import shard_of, shards_in
    from agenttrader.roster_verdict import GONE, entry
    from publisher import roster

    with counted() as rebuilt:
        roster.rebuild(db)
    sample = uids[:ROSTER_REFRESH_SAMPLE]
    with counted() as refreshed, log_bytes() as logged:
        for uid in sample:
            roster.on_source_written(db, paths.trading_status_doc(uid))
    n = len(sample)
    marker = db.document(paths.ROSTER_DOC).get()
    gone = entry(marker.read_time - timedelta(days=2), GONE)
    shard = shard_of("departed", shards_in(marker.to_dict()))
    db.document(paths.roster_shard_doc(shard)).set({"members": {"departed": gone}}, merge=True)
    loaded = roster.read(db)
    with counted() as upkeep:
        done = roster.maintain(db, loaded)
    if done.dropped != 1:
        raise RuntimeError(f"the upkeep should have dropped one tombstone: {done}")
    return {
        "rebuild_per_tenant": rebuilt.per(len(uids)),
        "refresh": {**refreshed.per(n), "log_bytes": logged[0] / n, "log_lines": logged[1] / n},
        "upkeep_drop": asdict(upkeep),
    }


def measure_fan_out(deps: Any, recorder: RecordingPublisher, sample: int) -> dict[str, Any]:
    """Ticks as the publisher runs them (``SYNC_SCHEDULE=market-hours``): an open one (the
    second: from then on each also finalizes the previous pulse) and a closed one; the clock
    read and the roster alone."""
    from agenttrader import market_clock
    from publisher import roster
    from publisher import tick as fanout

    db = deps.firestore
    store_clock(db, is_open=True)
    first = fanout.fan_out(deps, tick(datetime.now(UTC)))
    if first.published != sample:
        raise RuntimeError(f"the first tick published {first.published} of {sample}")
    recorder.sizes.clear()
    with counted() as clock:
        decision = market_clock.decide_for_tick(deps, datetime.now(UTC))
    if not decision.publish or decision.check_clock:
        raise RuntimeError(f"a fresh open clock should publish without asking: {decision}")
    with counted() as load:
        roster.load(db)
    with counted() as whole, log_bytes() as logged:
        result = fanout.fan_out(deps, tick(datetime.now(UTC)))
    sizes = list(recorder.sizes)
    store_clock(db, is_open=False)
    with counted() as closed, log_bytes() as closed_logged:
        skipped = fanout.fan_out(deps, tick(datetime.now(UTC)))
    store_clock(db, is_open=True)
    if result.published != sample or skipped.published or skipped.skipped_tick is None:
        raise RuntimeError(f"open tick {result}, closed tick {skipped}")
    return {
        "pulse_id": result.pulse_id,
        "published": result.published,
        "clock_reads": clock.reads,
        "roster_reads": load.reads,
        "tick_reads": whole.reads - clock.reads - load.reads,
        "tick_writes": whole.writes + whole.deletes,
        "tick_log_bytes": logged[0],
        "tick_log_lines": logged[1],
        "closed_tick_reads": closed.reads,
        "closed_tick_writes": closed.writes + closed.deletes,
        "closed_tick_log_bytes": closed_logged[0],
        "closed_tick_log_lines": closed_logged[1],
        "message_bytes": sum(sizes) / max(len(sizes), 1),
        "messages_recorded": len(sizes),
    }


def measure_worker_pass(
    worker: Any,
    requests: Sequence[Any],
    *,
    sim_port: int,
    threads: int,
    attempt: int = 1,
    failing: bool = False,
) -> dict[str, float]:
    """One delivery of each request through ``SyncWorker.handle`` as ``sync_user`` calls it,
    ``threads`` at once; each must sync (``failing``: each must ask for redelivery with a
    ``RetryableError``, logged by the entry point's :mod:`agenttrader.redelivery`)."""
    from agenttrader import redelivery
    from agenttrader.errors import RetryableError
    from agenttrader.events import PubsubDelivery
    from sync_worker.worker import Result

    def handle(request: Any) -> tuple[float, float]:
        delivery = PubsubDelivery(
            f"cost-{request.uid}-{request.requested_at.timestamp()}",
            request.to_bytes(),
            request.attributes(),
            request.requested_at,
            attempt,
        )
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            with redelivery.for_message(delivery):
                outcome: Any = worker.handle(delivery)
        except redelivery.Redeliver as err:
            outcome = err.__cause__
        if failing != isinstance(outcome, RetryableError) or (
            not failing and outcome is not Result.SYNCED
        ):
            raise RuntimeError(f"{request.uid}: {outcome!r}")
        return time.monotonic() - wall, time.thread_time() - cpu

    with (
        counted() as ops,
        bytes_sent_to(sim_port) as sent,
        log_bytes() as logged,
        concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool,
    ):
        timings = list(pool.map(handle, requests))
    n = len(requests)
    return {
        **ops.per(n),
        "wall_ms": 1000 * sum(t[0] for t in timings) / n,
        "thread_cpu_ms": 1000 * sum(t[1] for t in timings) / n,
        "alpaca_bytes_sent": sent[0] / n,
        "alpaca_connections": sent[1] / n,
        "log_bytes": logged[0] / n,
        "log_lines": logged[1] / n,
    }


def measure_worker(
    deps: Any, sim: Any, key_ids: Mapping[str, str], pulse_id: str, threads: int
) -> dict[str, dict[str, float]]:
    """First syncs (snapshots created); a new instance (keys not cached: cold); the same
    instance again (the same keys_version: warm); a failing attempt (HTTP 503) and its
    redelivery once Alpaca recovered; syncs whose message asks for the clock."""
    from agenttrader.keys_version import version_of
    from agenttrader.messages import Reason, SyncRequest
    from agenttrader.paths import MARKET_CLOCK_DOC
    from devtools.simulator import Scenario
    from sync_worker.worker import SyncWorker

    uids = list(key_ids)
    at = datetime.now(UTC)
    version = version_of(CONFIGURED_AT)

    def scheduled(seconds: int, who: Sequence[str], **extra: Any) -> list[Any]:
        when = at + timedelta(seconds=seconds)
        return [
            SyncRequest(
                uid, Reason.SCHEDULE, when, pulse_id=pulse_id, keys_version=version, **extra
            )
            for uid in who
        ]

    where: dict[str, Any] = {"sim_port": sim.port, "threads": threads}
    worker = {"first": measure_worker_pass(SyncWorker(deps), scheduled(1, uids), **where)}
    instance = SyncWorker(deps)
    worker["cold"] = measure_worker_pass(instance, scheduled(2, uids), **where)
    worker["warm"] = measure_worker_pass(instance, scheduled(3, uids), **where)
    retried = scheduled(4, uids)
    for uid in uids:
        sim.set_scenario(key_ids[uid], Scenario(kind="server_error", status=500))
    try:
        worker["failing"] = measure_worker_pass(instance, retried, failing=True, **where)
    finally:
        for uid in uids:
            sim.set_scenario(key_ids[uid], Scenario())
    worker["recovery"] = measure_worker_pass(instance, retried, attempt=2, **where)
    worker["warm_again"] = measure_worker_pass(instance, scheduled(5, uids), **where)
    asking = uids[:ASK_SAMPLE]
    worker["asking"] = measure_worker_pass(
        instance, scheduled(6, asking, check_clock=True), **where
    )
    # A refreshed clock names the asking pulse; store_clock's names none.
    clock = deps.firestore.document(MARKET_CLOCK_DOC).get().to_dict() or {}
    worker["asking"]["clock_refreshed"] = float(clock.get("pulse_id") == pulse_id)
    return worker


def measure(sample: int, threads: int) -> dict[str, Any]:
    """Every measured figure, against fresh emulators and an in-process simulator."""
    import google.cloud.pubsub_v1 as pubsub_v1

    from agenttrader import pulses
    from agenttrader.deps import Deps
    from agenttrader.settings import Settings, SyncSchedule
    from benchmarks import pipeline
    from devtools import emulators
    from devtools.simulator import AlpacaSimulator
    from devtools.topology import apply_topology

    project = f"cost-{uuid.uuid4().hex[:6]}"
    uids = [uid_of(i) for i in range(sample)]
    with (
        emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project=project) as hosts,
        AlpacaSimulator(default_latency_ms=LATENCY_MS) as sim,
    ):
        os.environ.update(
            {**hosts, "GOOGLE_CLOUD_PROJECT": project, "ALPACA_ALLOWED_BASE_URLS": sim.base_url}
        )
        settings = replace(Settings.from_env(), sync_schedule=SyncSchedule.MARKET_HOURS)
        real = Deps(settings).publisher
        subscriber = pubsub_v1.SubscriberClient()
        try:
            apply_topology(project, real, subscriber)
        finally:
            subscriber.close()
        recorder = RecordingPublisher(real)
        deps = Deps(settings, publisher=recorder)  # type: ignore[arg-type]
        key_ids = seed(deps.firestore, sim, uids)
        roster_figures = measure_roster(deps.firestore, uids)
        fan = measure_fan_out(deps, recorder, sample)
        worker = measure_worker(deps, sim, key_ids, fan["pulse_id"], threads)
        with counted() as rollup:
            pulses.rollup(deps.firestore, fan["pulse_id"])
        with counted() as loop_ops, bytes_sent_to(sim.port) as loop_sent:
            loop = pipeline.run_single_loop(project, sim.base_url, sample)
        real.stop()
    return {
        "sample": sample,
        "roster": roster_figures,
        "fan_out": fan,
        "worker": worker,
        "rollup": asdict(rollup),
        "single_loop": {
            **loop_ops.per(sample),
            "syncs_per_s": loop["syncs_per_s"],
            "alpaca_bytes_sent": loop_sent[0] / sample,
        },
    }


def inputs_from(
    figures: Mapping[str, Any], cpu_ms: float, publisher_ms: float
) -> tuple[Workload, LoopWorkload]:
    fan, worker, rollup = figures["fan_out"], figures["worker"], figures["rollup"]
    refresh, rebuild = figures["roster"]["refresh"], figures["roster"]["rebuild_per_tenant"]
    cold, warm, failing, recovery = (worker[k] for k in ("cold", "warm", "failing", "recovery"))
    asking = worker["asking"]
    workload = Workload(
        worker_reads_cold=cold["reads"],
        worker_reads_warm=warm["reads"],
        worker_writes=warm["writes"],
        worker_deletes=warm["deletes"],
        tick_reads=fan["tick_reads"],
        tick_writes=fan["tick_writes"],
        rollup_reads_fixed=rollup["reads"] - 3,
        rollup_aggregations=3,
        rollup_writes=rollup["writes"] + rollup["deletes"],
        message_bytes=fan["message_bytes"],
        cpu_ms=cpu_ms,
        wall_ms=warm["wall_ms"],
        alpaca_bytes_sent=warm["alpaca_bytes_sent"],
        app_log_bytes=warm["log_bytes"],
        publisher_wall_ms_per_tenant=publisher_ms,
        clock_reads_per_tick=fan["clock_reads"],
        closed_tick_reads=fan["closed_tick_reads"],
        tick_log_bytes=fan["tick_log_bytes"],
        tick_log_lines=fan["tick_log_lines"],
        closed_tick_log_bytes=fan["closed_tick_log_bytes"],
        closed_tick_log_lines=fan["closed_tick_log_lines"],
        clock_ask_writes=max(asking["writes"] - warm["writes"], 0.0),
        clock_ask_alpaca_bytes=max(asking["alpaca_bytes_sent"] - warm["alpaca_bytes_sent"], 0.0),
        roster_refresh_reads=refresh["reads"],
        roster_refresh_writes=refresh["writes"] + refresh["deletes"],
        roster_refresh_log_bytes=refresh["log_bytes"],
        rebuild_reads_per_tenant=rebuild["reads"],
        rebuild_writes_per_tenant=rebuild["writes"] + rebuild["deletes"],
        failing_reads=failing["reads"],
        failing_writes=failing["writes"],
        failing_deletes=failing["deletes"],
        failing_log_bytes=failing["log_bytes"],
        failing_alpaca_bytes=failing["alpaca_bytes_sent"],
        recovery_reads=recovery["reads"],
        recovery_writes=recovery["writes"],
        recovery_deletes=recovery["deletes"],
    )
    loop = figures["single_loop"]
    loop_workload = LoopWorkload(
        reads_per_user=loop["reads"],
        writes_per_user=loop["writes"] + loop["deletes"],
        tenants_per_minute=60 * loop["syncs_per_s"],
        alpaca_bytes_sent=loop["alpaca_bytes_sent"],
    )
    return workload, loop_workload


def print_measured(figures: Mapping[str, Any]) -> None:
    n = figures["sample"]
    print(f"measured over {n} tenants (Alpaca simulator at {LATENCY_MS} ms, in-process):")
    for name in ("first", "cold", "warm", "failing", "recovery", "warm_again", "asking"):
        f = figures["worker"][name]
        print(
            f"  worker, {name:<10}: {f['reads']:.2f} reads, {f['writes']:.2f} writes, "
            f"{f['deletes']:.2f} deletes; {f['wall_ms']:.0f} ms wall, "
            f"{f['thread_cpu_ms']:.1f} ms handler-thread CPU, "
            f"{f['alpaca_bytes_sent']:.0f} B sent to Alpaca "
            f"({f['alpaca_connections']:.2f} connections), "
            f"{f['log_bytes']:.0f} B in {f['log_lines']:.1f} log lines"
        )
    if not figures["worker"]["asking"].get("clock_refreshed"):
        print(
            "  WARNING: the check_clock messages did not refresh ops/market_clock (the worker "
            "does not call market_clock.refresh_after_sync): in production the clock would stay "
            "missing and every tick would publish (fail open), as SYNC_SCHEDULE=always does"
        )
    fan = figures["fan_out"]
    print(
        f"  open tick: {fan['clock_reads']} clock read, {fan['roster_reads']} roster reads "
        f"(the marker and {fan['roster_reads'] - 1} shards); {fan['tick_reads']} other reads, "
        f"{fan['tick_writes']} writes; {fan['tick_log_bytes']} B in "
        f"{fan['tick_log_lines']} log lines; message {fan['message_bytes']:.0f} B (data + "
        f"attributes, {fan['messages_recorded']} recorded); published {fan['published']}"
    )
    print(
        f"  closed tick: {fan['closed_tick_reads']} reads, {fan['closed_tick_writes']} writes, "
        f"{fan['closed_tick_log_bytes']} B in {fan['closed_tick_log_lines']} log lines"
    )
    r = figures["rollup"]
    print(f"  one rollup: {r['reads']} reads, {r['writes'] + r['deletes']} writes")
    ro = figures["roster"]
    rebuild, refresh = ro["rebuild_per_tenant"], ro["refresh"]
    print(
        f"  roster: one trigger run {refresh['reads']:.2f} reads, {refresh['writes']:.2f} "
        f"writes, {refresh['log_bytes']:.0f} B of logs; one-off rebuild per tenant "
        f"{rebuild['reads']:.2f} reads, {rebuild['writes']:.2f} writes"
    )
    if "upkeep_drop" in ro:
        drop = ro["upkeep_drop"]
        print(
            f"  roster upkeep dropping a tombstone: {drop['reads']} reads, {drop['writes']} "
            "writes (a steady tick's upkeep: none)"
        )
    loop = figures["single_loop"]
    print(
        f"  single loop: {loop['reads']:.2f} reads, {loop['writes']:.2f} writes per user; "
        f"{loop['syncs_per_s']:.2f} users/s; {loop['alpaca_bytes_sent']:.0f} B sent to Alpaca"
    )
