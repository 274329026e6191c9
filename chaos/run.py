"""The chaos suite's driver: ``python -m chaos.run --tenants 300`` (``make chaos``).

One pulse over N simulated tenants through the local stack, the publisher and ``sync_user``
real ``functions-framework`` processes, with the faults of :mod:`chaos.faults` injected; then
the transient failures are healed and their dead letters replayed with the operator's replay
core; then :mod:`chaos.invariants` are checked. Prints a report; exits 1 if an invariant fails.

Sequence (all on the main thread, which must outlive the processes it restarts):
seed → start the stack → taps and snapshot listener → early kill-switch flips → tick → kill -9
the publisher as its first messages go out, restart it (the redelivered tick resumes the
fan-out) → pulse published → late flips, keys broken, copies, racing replays → Firestore
emulator paused → kill -9 ``sync_user`` and restart it → retries settle → heal, replay the
dead letters of transient faults with the Pub/Sub emulator paused mid-replay, replay again
what that left → settle → rollups settle → gather evidence → check.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.cloud import firestore, pubsub_v1

from agenttrader import paths, topology
from chaos import faults
from chaos.faults import Fault, FaultPlan, FaultRates, Kill, Pause, PauseInBackground
from chaos.invariants import MAX_LISTED, Evidence, Message, TenantState, check
from console import deadletters
from console.hold import HoldSubscription
from devtools import emulators
from devtools.localstack.push_bridge import PushBridge
from devtools.localstack.seed import seed_user
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator, Scenario

RETRY = topology.RetryPolicy(1, 2)
"""Backoff 1-2 s: a message exhausts its 5 delivery attempts within the run."""
ROLLUP_DELAY_SECONDS = 0.3
KILL_PAUSE_SECONDS = 1.0
"""How long ``sync_user`` stays dead before its restart begins (the restart adds its boot)."""
QUIET_SECONDS = 3.0
"""The accounting must balance, with no delivery, this long before the pipeline is settled."""
IDLE_GIVE_UP_SECONDS = topology.subscription(topology.USER_SYNC_WORKER).ack_deadline_seconds + 20.0
"""No delivery at all for this long while unbalanced: nothing more will come; stop waiting.
Longer than the worker subscription's ack deadline: a message Pub/Sub handed to a pull whose
caller had given up (the emulator paused mid-pull) is delivered again only once that deadline
has passed."""


@dataclass(frozen=True)
class ChaosConfig:
    tenants: int = 300
    seed: int = 1
    rates: FaultRates = field(default_factory=FaultRates)
    push_concurrency: int = 16
    threads: int = 16
    """``THREADS`` of each functions-framework process."""
    kill_at: float = 0.25
    """Share of the pulse's messages delivered when ``sync_user`` is killed."""
    settle_timeout: float = 240.0
    log_dir: Path | None = None
    """Where the functions' logs go (default: a temporary directory, named in the report)."""
    kill_publisher: bool = True
    """``kill -9`` the publisher as the pulse's first messages go out (then restart it)."""
    firestore_pause: float = 20.0
    """Seconds the Firestore emulator is stopped mid-pulse (0: not)."""
    pubsub_pause: float = 20.0
    """Seconds the Pub/Sub emulator is stopped mid-replay (0: not)."""

    @property
    def fanout_per_request(self) -> int:
        """``FANOUT_MESSAGES_PER_REQUEST``: about 100 publish requests whatever the tenants
        (at least 40), so that the publisher is likely killed between two of them."""
        return max(1, min(1000, self.tenants // 100))


def chaos_env(hosts: dict[str, str], project: str, simulator: AlpacaSimulator) -> dict[str, str]:
    """The pipeline's environment: emulators, the simulator as an allowed Alpaca base URL,
    a 1 s Alpaca timeout, quick pulse rollups (as the tests' ``stack_env``)."""
    return {
        **hosts,
        "GOOGLE_CLOUD_PROJECT": project,
        "ALPACA_ALLOWED_BASE_URLS": simulator.base_url,
        "ALPACA_TIMEOUT_SECONDS": "1",
        "PULSE_ROLLUP_DELAY_SECONDS": str(ROLLUP_DELAY_SECONDS),
    }


# --- observers ------------------------------------------------------------------------------


class Tap:
    """A subscription of the run's own on ``topic``: sees every message published from its
    creation on, whatever the pipeline's subscriptions do with them. Pulled with short
    synchronous pulls on a thread of its own, deduplicated by message id, so a paused
    emulator (SIGSTOP) costs it at most a pull's deadline and a redelivery."""

    PULL_SECONDS = 2.0

    def __init__(self, project: str, topic: str, name: str) -> None:
        self._subscriber = pubsub_v1.SubscriberClient()
        self._path = self._subscriber.subscription_path(project, name)
        self._subscriber.create_subscription(
            name=self._path, topic=self._subscriber.topic_path(project, topic)
        )
        self._lock = threading.Lock()
        self._messages: dict[str, Message] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tap-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._subscriber.pull(
                    request={"subscription": self._path, "max_messages": 500},
                    timeout=self.PULL_SECONDS,
                    retry=None,
                )
            except Exception:  # noqa: BLE001 - deadline, unavailable while paused: pull again
                time.sleep(0.1)
                continue
            received = list(response.received_messages)
            with self._lock:
                for item in received:
                    message = item.message
                    self._messages.setdefault(
                        message.message_id,
                        Message(
                            message.message_id,
                            bytes(message.data),
                            dict(message.attributes),
                            message.publish_time,
                        ),
                    )
            if received:
                with contextlib.suppress(Exception):  # redelivered: deduplicated by id
                    self._subscriber.acknowledge(
                        request={
                            "subscription": self._path,
                            "ack_ids": [item.ack_id for item in received],
                        },
                        timeout=self.PULL_SECONDS,
                    )

    def messages(self) -> dict[str, Message]:
        with self._lock:
            return dict(self._messages)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._subscriber.close()


class SnapshotWatch:
    """Listens to every tenant's ``data/snapshot`` and records each ``requestedAt`` it sees,
    in order."""

    def __init__(self, db: firestore.Client) -> None:
        self._lock = threading.Lock()
        self._history: dict[str, list[datetime]] = {}
        self._primed = threading.Event()
        self._watch: Any = db.collection_group("data").on_snapshot(self._on_snapshot)
        if not self._primed.wait(30):
            raise TimeoutError("the snapshot listener did not start")

    def _on_snapshot(self, docs: list[Any], changes: list[Any], read_time: Any) -> None:
        with self._lock:
            for change in changes:
                uid = paths.owner_of(change.document.reference.path, paths.DATA_SNAPSHOT)
                if change.type.name == "REMOVED" or uid is None:
                    continue
                requested = (change.document.to_dict() or {}).get("requestedAt")
                if isinstance(requested, datetime):
                    self._history.setdefault(uid, []).append(requested)
        self._primed.set()

    def history(self) -> dict[str, list[datetime]]:
        with self._lock:
            return {uid: list(seen) for uid, seen in self._history.items()}

    def stop(self) -> None:
        self._watch.unsubscribe()


def wait_for(what: str, predicate: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


# --- the run --------------------------------------------------------------------------------


@dataclass
class Timeline:
    marks: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def mark(self, name: str) -> None:
        self.marks.append((name, time.monotonic() - self.started))


@dataclass(frozen=True)
class AlpacaFaults:
    """What the simulator served from the tick until the retries settled (before healing)."""

    by_status: dict[str, int]
    """Answers by HTTP status (a hung request counts when it finally answers)."""
    hung: int
    """Requests to the tenants that hang longer than the worker waits."""


@dataclass(frozen=True)
class PublisherKill:
    """The publisher killed mid-fan-out, and what its pulse document says afterwards."""

    kill: Kill
    killed_at: datetime
    out_before: int
    """Messages of the pulse published before the kill."""
    attempts: int
    """Deliveries of the tick that began the fan-out (the first, killed; then the resume)."""
    resumed_after: int | None
    """Messages the pulse document recorded as published when the fan-out was resumed
    (``None``: not resumed, the kill came after the fan-out)."""


@dataclass(frozen=True)
class Replays:
    """The operator's replays after healing: the first one with Pub/Sub paused mid-way, then
    a second one for what it left in the dead-letter subscription."""

    first: deadletters.Report
    again: deadletters.Report | None
    pause: Pause | None
    paused_after: int
    """Republishes resolved when Pub/Sub was paused."""


@dataclass
class ChaosResult:
    config: ChaosConfig
    project: str
    plan: FaultPlan
    evidence: Evidence
    violations: list[tuple[str, list[str]]]
    kill: Kill
    nacked_while_down: int
    alpaca: AlpacaFaults
    replay: Replays
    publisher_kill: PublisherKill | None
    firestore_pause: Pause | None
    settled: list[str]
    timeline: Timeline
    log_dir: Path

    @property
    def ok(self) -> bool:
        return not any(found for _name, found in self.violations)

    def report(self) -> str:
        return render(self)


class _Run:
    """One chaos run's state; :func:`run_chaos` drives it."""

    def __init__(self, project: str, sim: AlpacaSimulator, config: ChaosConfig) -> None:
        self.project = project
        self.sim = sim
        self.config = config
        self.db = firestore.Client(project=project)
        self.publisher = pubsub_v1.PublisherClient()
        self.user_sync = self.publisher.topic_path(project, topology.USER_SYNC)
        self.rng = random.Random(config.seed)
        self.uids = [f"chaos-{i:05d}" for i in range(config.tenants)]
        self.plan = faults.plan_faults(self.uids, config.rates, config.seed)
        self.key_ids: dict[str, str] = {}
        self.accounts: dict[str, str] = {}
        self.injected: dict[str, str] = {}
        self.timeline = Timeline()

    def seed(self) -> None:
        """Every tenant onboarded, with keys of a simulator account of its own, as the
        server would have left it (written before the stack listens: no first syncs)."""
        for uid in self.uids:
            tenant = self.sim.add_tenant(self.plan.scenarios.get(uid, Scenario()))
            self.key_ids[uid], self.accounts[uid] = tenant.key_id, tenant.account_id

        def one(uid: str) -> None:
            seed_user(
                self.db,
                uid,
                enabled=uid not in self.plan.disabled,
                configured=uid not in self.plan.not_configured,
                keys={
                    "key_id": self.key_ids[uid],
                    "secret_key": self.sim.tenant(self.key_ids[uid]).secret_key,
                    "base_url": self.sim.base_url,
                },
            )

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, self.uids))

    def tick(
        self, stack: LocalStack, tap: Tap
    ) -> tuple[str, datetime, list[Message], PublisherKill | None]:
        """One tick, and its pulse once published (:meth:`wait_for_pulse`). Unless configured
        otherwise, the publisher is killed (``kill -9``) as soon as the first message of the
        fan-out is out (nothing else is published to ``user-sync`` before), then restarted:
        Pub/Sub redelivers the tick to the new process, which resumes the fan-out."""
        assert stack.ticker is not None
        tick_id = stack.ticker.tick()
        if not self.config.kill_publisher:
            return (*self.wait_for_pulse(tick_id, tap), None)
        deadline = time.monotonic() + 60
        while not tap.messages():
            if time.monotonic() > deadline:
                raise TimeoutError("the pulse's first message: not within 60 s")
            time.sleep(0.002)
        killed_at = datetime.now(UTC)
        killed = faults.kill_and_restart(stack.functions["publish_user_syncs"], KILL_PAUSE_SECONDS)
        self.timeline.mark("publisher killed and back")
        pulse_id, requested_at, pulse = self.wait_for_pulse(tick_id, tap)
        record = self.db.document(paths.pulse_doc(pulse_id)).get().to_dict() or {}
        return (
            pulse_id,
            requested_at,
            pulse,
            PublisherKill(
                killed,
                killed_at,
                out_before=sum(1 for m in pulse if m.publish_time <= killed_at),
                attempts=int(record.get("attempts") or 0),
                resumed_after=record.get("resumed_published_before"),
            ),
        )

    def wait_for_pulse(self, tick_id: str, tap: Tap) -> tuple[str, datetime, list[Message]]:
        """The pulse the tick started, once the publisher published all of it."""
        history = self.db.collection(paths.PULSES_COLLECTION)

        def published() -> dict[str, Any] | None:
            for doc in history.stream():
                data = doc.to_dict() or {}
                if data.get("tick_message_id") == tick_id and data.get("state") == "published":
                    return data
            return None

        pulse = wait_for("the tick's pulse published", published, 120)
        pulse_id, count = str(pulse["pulse_id"]), int(pulse["published_count"])

        def seen() -> list[Message] | None:
            mine = [
                m
                for m in tap.messages().values()
                if (r := m.request) is not None and r.pulse_id == pulse_id
            ]
            return mine if len(mine) >= count else None

        messages: list[Message] = wait_for("the pulse's messages on the tap", seen, 60)
        requested = messages[0].request
        assert requested is not None
        return pulse_id, requested.requested_at, messages

    def inject_mid_run(self, pulse: list[Message]) -> None:
        plan = self.plan
        faults.flip_kill_switches(self.db, plan.flip_late)
        faults.set_scenarios(
            self.sim,
            [self.key_ids[uid] for uid in plan.with_fault(Fault.BAD_KEYS)],
            Scenario(kind="bad_keys"),
        )
        copies = self.rng.sample(
            sorted(pulse, key=lambda m: m.message_id),
            min(len(pulse), faults.count_of(plan.duplicate_share, len(pulse))),
        )
        for message_id in faults.publish_copies(
            self.publisher, self.user_sync, [(m.data, m.attributes) for m in copies]
        ):
            self.injected[message_id] = "duplicate"
        for message_id in faults.publish_racing_replays(
            self.publisher, self.user_sync, plan.racing_replays, datetime.now(UTC)
        ):
            self.injected[message_id] = "racing_replay"

    def settle(self, bridge: PushBridge, user_tap: Tap, dead_tap: Tap) -> str:
        """Wait until every message on ``user-sync`` was acknowledged or dead-lettered by
        Pub/Sub, with no delivery for :data:`QUIET_SECONDS`; says how the wait ended."""
        deadline = time.monotonic() + self.config.settle_timeout
        last_delivered, last_change = -1, time.monotonic()
        while True:
            now = time.monotonic()
            delivered = bridge.stats.delivered
            if delivered != last_delivered:
                last_delivered, last_change = delivered, now
            limit = sum(
                1
                for m in dead_tap.messages().values()
                if deadletters.decode(m).source == deadletters.SOURCE_DELIVERY_LIMIT
            )
            balanced = len(user_tap.messages()) == bridge.stats.acked + limit
            if balanced and now - last_change >= QUIET_SECONDS:
                return "balanced"
            if now - last_change >= IDLE_GIVE_UP_SECONDS:
                return f"unbalanced, no delivery for {IDLE_GIVE_UP_SECONDS:.0f} s"
            if now > deadline:
                return f"timed out after {self.config.settle_timeout:.0f} s"
            time.sleep(0.2)

    def heal_and_replay(self, pubsub_host: str) -> Replays:
        """The outage is over: every transient fault healed, then the operator's replay of
        their dead letters (Pub/Sub's, after the delivery limit) back to ``user-sync``, with
        the Pub/Sub emulator paused for ``pubsub_pause`` seconds once the first republish
        resolved; then, as an operator would, a second replay of what the first one left."""
        transient = self.plan.with_fault(*faults.TRANSIENT)
        faults.set_scenarios(self.sim, [self.key_ids[uid] for uid in transient], Scenario())
        seconds = self.config.pubsub_pause
        pauser = PauseInBackground(pubsub_host, "pubsub emulator", seconds) if seconds else None
        paused_after = [0]

        def progress(done: deadletters.Progress) -> None:
            if pauser is not None and done.done >= 1 and not pauser.started:
                paused_after[0] = done.done
                pauser.start()

        first = self._replay(transient, progress)
        pause = None
        if pauser is not None:
            pauser.start()  # nothing was replayed: paused after it, still
            pause = pauser.result(timeout=seconds + 60)
        again = None
        if first.count(deadletters.Status.FAILED) or first.interrupted or first.aborted:
            again = self._replay(transient, None)
        return Replays(first, again, pause, paused_after[0])

    def _replay(
        self, uids: Sequence[str], progress: Callable[[deadletters.Progress], None] | None
    ) -> deadletters.Report:
        subscriber = pubsub_v1.SubscriberClient()
        try:
            hold = HoldSubscription(
                subscriber,
                subscriber.subscription_path(self.project, topology.USER_SYNC_DEAD_LETTER_HOLD),
            )
            report = deadletters.replay(
                hold,
                self.publisher,
                self.user_sync,
                deadletters.Filters(
                    uids=frozenset(uids),
                    sources=frozenset({deadletters.SOURCE_DELIVERY_LIMIT}),
                ),
                clock=lambda: datetime.now(UTC),
                progress=progress,
            )
        finally:
            subscriber.close()
        for item in report.items:
            if item.status is deadletters.Status.REPLAYED:
                self.injected[item.detail.split(" ", 1)[0]] = "replay"
        return report

    def wait_for_rollups(self) -> None:
        """Until ``ops/last_pulse`` stops changing (workers roll up on a trailing timer)."""
        ref = self.db.document(paths.LAST_PULSE_DOC)
        last: Any = None
        stable_since = time.monotonic()
        deadline = stable_since + 30
        while time.monotonic() < deadline:
            current = (ref.get().to_dict() or {}).get("updated_at")
            if current != last:
                last, stable_since = current, time.monotonic()
            elif time.monotonic() - stable_since >= max(2.0, 5 * ROLLUP_DELAY_SECONDS):
                return
            time.sleep(0.25)

    def tenants(self) -> dict[str, TenantState]:
        """Every tenant's documents, read one by one (no aggregation, no pipeline code)."""
        kinds = {
            "config": paths.alpaca_config_doc,
            "trading": paths.trading_status_doc,
            "snapshot": paths.snapshot_doc,
            "error": paths.last_sync_error_doc,
            "sync": paths.sync_state_doc,
        }
        refs = [self.db.document(build(uid)) for uid in self.uids for build in kinds.values()]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(refs), 500):
            for snap in self.db.get_all(refs[start : start + 500]):
                if snap.exists:
                    found[snap.reference.path] = snap.to_dict() or {}

        def get(kind: str, uid: str) -> dict[str, Any] | None:
            return found.get(kinds[kind](uid))

        return {
            uid: TenantState(
                uid=uid,
                account_id=self.accounts[uid],
                fault=None if uid in self.plan.not_configured else self.plan.faults[uid],
                configured=(get("config", uid) or {}).get("configured") is True,
                enabled=(get("trading", uid) or {}).get("enabled") is True,
                snapshot=get("snapshot", uid),
                last_error=get("error", uid),
                sync_state=get("sync", uid),
            )
            for uid in self.uids
        }


def run_chaos(
    env: dict[str, str], project: str, sim: AlpacaSimulator, config: ChaosConfig
) -> ChaosResult:
    """One chaos run in ``project`` (fresh: its topics and documents are the run's alone)."""
    env = {**env, "FANOUT_MESSAGES_PER_REQUEST": str(config.fanout_per_request)}
    os.environ.update(env)
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="agenttrader-chaos-"))
    run = _Run(project, sim, config)
    run.seed()
    run.timeline.mark("seeded")
    stack = LocalStack(
        project,
        {**env, "THREADS": str(config.threads)},
        in_process=False,
        push_concurrency=config.push_concurrency,
        retry_override=RETRY,
        log_dir=log_dir,
        audit_kill_switch=False,
    )
    with contextlib.ExitStack() as cleanup:
        stack.start()
        cleanup.callback(stack.stop)
        assert stack.ticker is not None and stack.push_bridge is not None
        bridge = stack.push_bridge
        user_tap = Tap(project, topology.USER_SYNC, "chaos-tap-user-sync")
        cleanup.callback(user_tap.stop)
        dead_tap = Tap(project, topology.USER_SYNC_DEAD_LETTER, "chaos-tap-dead-letter")
        cleanup.callback(dead_tap.stop)
        watch = SnapshotWatch(run.db)
        cleanup.callback(watch.stop)
        run.timeline.mark("stack up")

        # Committed before the tick: the first tick builds the roster from a scan that sees them,
        # so the killed fan-out and its resume publish to the same tenants.
        faults.flip_kill_switches(run.db, run.plan.flip_early)
        sim.reset_stats()
        pulse_id, requested_at, pulse, publisher_kill = run.tick(stack, user_tap)
        run.timeline.mark("pulse published")
        run.inject_mid_run(pulse)
        wait_for(
            "deliveries before the kill",
            lambda: bridge.stats.delivered >= max(1, config.kill_at * len(pulse)),
            60,
        )
        firestore_pause = None
        if config.firestore_pause:
            firestore_pause = faults.pause_group_of(
                env[emulators.FIRESTORE.env_var], "firestore emulator", config.firestore_pause
            )
            run.timeline.mark("firestore paused and back")
        nacked_before = bridge.stats.nacked
        kill = faults.kill_and_restart(stack.functions["sync_user"], KILL_PAUSE_SECONDS)
        nacked_while_down = bridge.stats.nacked - nacked_before
        run.timeline.mark("sync_user killed and back")
        settled = [run.settle(bridge, user_tap, dead_tap)]
        run.timeline.mark("retries settled")
        alpaca = AlpacaFaults(
            by_status=dict(sim.stats()["by_status"]),
            hung=sum(sim.requests_for(run.key_ids[u]) for u in run.plan.with_fault(Fault.TIMEOUT)),
        )
        replay = run.heal_and_replay(env[emulators.PUBSUB.env_var])
        run.timeline.mark("replayed")
        settled.append(run.settle(bridge, user_tap, dead_tap))
        run.timeline.mark("replay settled")
        run.wait_for_rollups()
        run.timeline.mark("rollups settled")
        evidence = Evidence(
            pulse_id=pulse_id,
            pulse_requested_at=requested_at,
            eligible_at_tick=run.plan.eligible_at_tick,
            tenants=run.tenants(),
            last_pulse=run.db.document(paths.LAST_PULSE_DOC).get().to_dict(),
            published=user_tap.messages(),
            dead_letters=dead_tap.messages(),
            injected=dict(run.injected),
            acked=bridge.stats.acked,
            nacked=bridge.stats.nacked,
            snapshot_history=watch.history(),
        )
    run.timeline.mark("stack stopped")
    run.publisher.stop()
    return ChaosResult(
        config=config,
        project=project,
        plan=run.plan,
        evidence=evidence,
        violations=check(evidence),
        kill=kill,
        nacked_while_down=nacked_while_down,
        alpaca=alpaca,
        replay=replay,
        publisher_kill=publisher_kill,
        firestore_pause=firestore_pause,
        settled=settled,
        timeline=run.timeline,
        log_dir=log_dir,
    )


# --- the report -----------------------------------------------------------------------------


def render(result: ChaosResult) -> str:
    ev, plan, config = result.evidence, result.plan, result.config
    lines = [
        f"chaos: {config.tenants} tenants, seed {config.seed}, project {result.project}",
        "faults injected:",
    ]
    alpaca = ", ".join(
        f"{fault.value} {len(plan.with_fault(fault))}"
        for fault in (Fault.FLAKY, Fault.RATE_LIMITED, Fault.SERVER_ERROR, Fault.TIMEOUT)
    )
    lines.append(
        f"  Alpaca (set before the tick): {alpaca}"
        f" (flaky rate {config.rates.flaky_failure_rate:.0%},"
        f" timeout = {faults.HANG_SECONDS:g} s hang > ALPACA_TIMEOUT_SECONDS=1)"
    )
    answers = ", ".join(f"{code} x{n}" for code, n in sorted(result.alpaca.by_status.items()))
    lines.append(
        f"  Alpaca answered (tick to settled): {answers}; hung requests {result.alpaca.hung}"
    )
    lines.append(
        f"  keys broken after the tick: {len(plan.with_fault(Fault.BAD_KEYS))};"
        f" kill-switch flipped: {len(plan.flip_early)} just before the tick,"
        f" {len(plan.flip_late)} once the pulse was published"
    )
    pk = result.publisher_kill
    if pk is not None:
        resumed = (
            f"the redelivered tick resumed it after the {pk.resumed_after} recorded as published"
            if pk.resumed_after is not None
            else "the fan-out had finished before the kill: nothing to resume"
        )
        lines.append(
            f"  publisher kill -9 mid-fan-out (pid {pk.kill.killed_pid} ->"
            f" {pk.kill.restarted_pid}), {pk.out_before} of the pulse's messages out before it"
            f" ({config.fanout_per_request} per publish request); {resumed}"
            f" ({pk.attempts} deliveries of the tick began the fan-out)"
        )
    if result.firestore_pause is not None:
        fp = result.firestore_pause
        lines.append(
            f"  Firestore emulator paused mid-pulse (SIGSTOP process group {fp.pgid})"
            f" {fp.seconds:.1f} s"
        )
    kinds = ev.published_by_kind()
    lines.append(
        f"  duplicated messages: {kinds['duplicate']}; racing replays: {kinds['racing_replay']}"
    )
    k = result.kill
    lines.append(
        f"  sync_user kill -9 (pid {k.killed_pid} -> {k.restarted_pid}), down"
        f" {k.down_seconds:.1f} s, {result.nacked_while_down} deliveries nacked meanwhile"
    )
    lines.append(
        f"  ineligible from the start: {len(plan.not_configured)} not configured,"
        f" {len(plan.disabled)} kill-switch off"
    )
    r = result.replay
    paused = (
        f"Pub/Sub emulator paused {r.pause.seconds:.1f} s after {r.paused_after} republish(es)"
        f" (SIGSTOP process group {r.pause.pgid})"
        if r.pause is not None
        else "no Pub/Sub pause"
    )
    again = (
        f"; replayed again: replayed {r.again.count(deadletters.Status.REPLAYED)},"
        f" failed {r.again.count(deadletters.Status.FAILED)}"
        if r.again is not None
        else ""
    )
    lines.append(
        "  after healing, operator replay of transient dead letters"
        f" ({paused}): replayed {r.first.count(deadletters.Status.REPLAYED)},"
        f" refused {r.first.count(deadletters.Status.REFUSED)},"
        f" failed {r.first.count(deadletters.Status.FAILED)}{again}"
    )
    lines.append(f"settling: after retries {result.settled[0]}; after replay {result.settled[-1]}")

    outcomes = ev.outcomes()
    published_uids = {m.uid for m in ev.pulse_messages()}
    last = ev.last_pulse or {}
    lines.append(f"pulse {ev.pulse_id}: published to {len(published_uids)} users")
    lines.append(
        "  ops/last_pulse:  success {s}, error {e}, skipped {k}".format(
            s=last.get("success_count"), e=last.get("error_count"), k=last.get("skipped_count")
        )
    )
    lines.append(
        f"  per-user truth:  success {outcomes['success']}, error {outcomes['error']},"
        f" skipped {len(ev.tenants) - len(published_uids) + outcomes['skipped']}"
        f" ({len(ev.tenants) - len(published_uids)} not published +"
        f" {outcomes['skipped']} skipped by the worker);"
        f" {len(published_uids) - sum(outcomes.values())} published users hold no outcome"
        " of this pulse (a later sync replaced it, or it was superseded)"
    )
    by_source = ev.dead_letters_by_source()
    lines.append(
        f"messages on user-sync: {len(ev.published)} = "
        + " + ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    )
    lines.append(
        f"  acknowledged {ev.acked} (the worker's own dead letters included: it acknowledges"
        f" after publishing them), nacked deliveries {ev.nacked}"
    )
    lines.append(
        "  dead letters: "
        + ", ".join(f"{source} {n}" for source, n in sorted(by_source.items()))
        + f"; published - acknowledged - delivery-limit ="
        f" {len(ev.published) - ev.acked - by_source[deadletters.SOURCE_DELIVERY_LIMIT]}"
    )
    eligible = [t for t in ev.tenants.values() if t.eligible]
    fresh = [
        t
        for t in eligible
        if isinstance(at := (t.snapshot or {}).get("requestedAt"), datetime)
        and at >= ev.pulse_requested_at
    ]
    transient = [t for t in eligible if t.fault in faults.TRANSIENT]
    lines.append(
        f"tenants eligible at the end: {len(eligible)}; fresh snapshot {len(fresh)};"
        f" transient faults with a fresh snapshot after the replay:"
        f" {sum(1 for t in transient if t in fresh)}/{len(transient)}"
    )
    lines.append("invariants:")
    for name, found in result.violations:
        lines.append(f"  {'FAIL' if found else 'PASS'}  {name}")
        if found:
            lines.append(f"        {len(found)} violation(s):")
            lines.extend(f"        - {v}" for v in found[:MAX_LISTED])
    marks = ", ".join(f"{name} {at:.1f} s" for name, at in result.timeline.marks)
    lines.append(f"timeline: {marks}")
    lines.append(f"function logs: {result.log_dir}")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------


@contextlib.contextmanager
def _emulators() -> Iterator[dict[str, str]]:
    """The emulators named by the environment, else fresh ones for this run."""
    names = (emulators.PUBSUB.env_var, emulators.FIRESTORE.env_var)
    if all(os.environ.get(n) for n in names):
        yield {n: os.environ[n] for n in names}
        return
    with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project="chaos") as hosts:
        yield hosts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__)
    parser.add_argument("--tenants", type=int, default=ChaosConfig.tenants)
    parser.add_argument("--seed", type=int, default=ChaosConfig.seed)
    parser.add_argument("--log-dir", type=Path, help="functions' logs (default: a temp dir)")
    parser.add_argument(
        "--firestore-pause", type=float, default=ChaosConfig.firestore_pause, metavar="SECONDS"
    )
    parser.add_argument(
        "--pubsub-pause", type=float, default=ChaosConfig.pubsub_pause, metavar="SECONDS"
    )
    args = parser.parse_args(argv)
    config = ChaosConfig(
        tenants=args.tenants,
        seed=args.seed,
        log_dir=args.log_dir,
        firestore_pause=args.firestore_pause,
        pubsub_pause=args.pubsub_pause,
    )
    started = time.monotonic()
    with _emulators() as hosts, AlpacaSimulator() as sim:
        project = f"chaos-{uuid.uuid4().hex[:8]}"
        result = run_chaos(chaos_env(hosts, project, sim), project, sim, config)
    print(result.report())
    print(f"total {time.monotonic() - started:.1f} s: {'PASS' if result.ok else 'FAIL'}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
