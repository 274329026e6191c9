"""Pulses that always complete, against the emulators: a fan-out killed half-way and resumed by
its tick redelivered late, an older tick arriving after a newer one, a tick from the future,
two ticks within one second, and results of a killed worker instance rolled up by another."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from agenttrader import paths, pulses, snapshot
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.pulses import RollupScheduler
from devtools.simulator import AlpacaSimulator, Scenario
from publisher import roster, tick
from publisher.tick import Skip, fan_out
from sync_worker.worker import Result, SyncWorker
from tests.pipeline_fixtures import doc, pull, seed_user, sim_tenant, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def deps(pipeline_deps: Deps) -> Deps:
    return pipeline_deps


def a_tick(message_id: str, at: datetime) -> PubsubDelivery:
    return PubsubDelivery(message_id, b"{}", {}, at)


def seed(db: firestore.Client, count: int) -> list[str]:
    uids = [f"u-{i:03d}" for i in range(count)]
    for uid in uids:
        seed_user(db, uid)
    roster.rebuild(db)
    return uids


def taken(project: str, timeout: float = 5.0) -> list[Any]:
    """Messages published to ``user-sync`` since the last call (the tap subscription)."""
    return pull(project, "tap", timeout=timeout, until_quiet=True)


def uids_of(messages: list[Any]) -> list[str]:
    return [json.loads(m.data)["uid"] for m in messages]


def succeed(db: firestore.Client, pulse_id: str, uids: list[str]) -> None:
    """What ``sync_user`` leaves for a success of ``pulse_id``."""
    for uid in uids:
        db.document(paths.snapshot_doc(uid)).set(
            {snapshot.PULSE_FIELD: pulse_id, snapshot.OUTCOME_FIELD: "success"}
        )


def last_pulse(db: firestore.Client) -> dict[str, Any]:
    return doc(db, paths.LAST_PULSE_DOC) or {}


class Killed(BaseException):
    """The publisher's process dying: nothing after it runs, nothing catches it."""


class DiesAfter:
    """``PublisherClient.api`` of a process killed after ``requests`` publish requests."""

    def __init__(self, api: Any, requests: int) -> None:
        self._api, self._left, self._lock = api, requests, threading.Lock()

    def publish(self, request: Any, timeout: float) -> Any:
        with self._lock:
            self._left -= 1
            alive = self._left >= 0
        if not alive:
            raise Killed
        return self._api.publish(request=request, timeout=timeout)


class DyingPublisher:
    def __init__(self, publisher: Any, requests: int) -> None:
        self.api = DiesAfter(publisher.api, requests)


def test_a_fan_out_killed_half_way_is_resumed_by_its_tick_redelivered_late(
    deps: Deps, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = deps.firestore
    eligible = seed(db, 12)
    monkeypatch.setattr(tick, "PROGRESS_EVERY_SECONDS", 0.0)
    settings = dataclasses.replace(deps.settings, fanout_messages_per_request=2)
    dying = Deps(settings, publisher=DyingPublisher(deps.publisher, 2), firestore_client=db)  # type: ignore[arg-type]
    sent_at = datetime.now(UTC) - timedelta(seconds=1)
    delivery = a_tick("7007", sent_at)
    pulse_id = pulses.pulse_id_for("7007", sent_at)

    with pytest.raises(Killed):
        fan_out(dying, delivery)
    first = uids_of(taken(project))
    assert 0 < len(first) < len(eligible)
    left = pulses.read(db, pulse_id)
    assert left is not None and left.state is pulses.PulseState.PUBLISHING
    assert left.cursor is not None and left.published_before >= 2
    # The workers of what went out report; no published count yet: not complete (main said
    # complete, reading the missing count as 0).
    succeed(db, pulse_id, first)
    totals = pulses.rollup(db, pulse_id)
    assert totals is not None and totals.published is None and not totals.complete
    assert last_pulse(db)["complete"] is False

    # Pub/Sub redelivers the tick more than 5 minutes after its publish time: resumed.
    late = fan_out(deps, delivery, now=sent_at + timedelta(minutes=6))
    assert late.skipped_tick is None and late.resumed_after == left.cursor
    second = uids_of(taken(project))
    assert sorted(set(first) | set(second)) == eligible  # every tenant, at least once
    assert all(uid > left.cursor for uid in second)  # nothing up to the cursor again
    assert late.published == len(second)
    record = doc(db, paths.pulse_doc(pulse_id))
    assert record is not None and record["state"] == "published"
    assert record["published_count"] == left.published_before + len(second) == len(eligible)
    assert record["attempts"] == 2 and record["resumed_after"] == left.cursor
    assert last_pulse(db)["complete"] is False  # outcomes of the resumed part still missing
    succeed(db, pulse_id, eligible[:-1])
    assert pulses.rollup(db, pulse_id).complete is False  # type: ignore[union-attr]
    succeed(db, pulse_id, eligible)
    assert pulses.rollup(db, pulse_id).complete is True  # type: ignore[union-attr]
    assert last_pulse(db)["complete"] is True and last_pulse(db)["pulse_id"] == pulse_id
    # A third delivery publishes nothing.
    assert fan_out(deps, delivery).skipped_tick is Skip.DUPLICATE


def test_an_older_tick_arriving_late_never_finalizes_the_newer_pulse(
    deps: Deps, project: str
) -> None:
    db = deps.firestore
    eligible = seed(db, 3)
    now = datetime.now(UTC)
    newer = fan_out(deps, a_tick("8002", now - timedelta(seconds=5)))
    assert len(taken(project)) == 3
    older = fan_out(deps, a_tick("8001", now - timedelta(seconds=65)))
    assert older.skipped_tick is Skip.SUPERSEDED
    assert taken(project, timeout=2) == []
    record = doc(db, paths.pulse_doc(newer.pulse_id))
    assert record is not None and not record.get("final")
    assert doc(db, paths.pulse_doc(older.pulse_id)) is None
    succeed(db, newer.pulse_id, eligible)
    pulses.rollup(db, newer.pulse_id)
    assert last_pulse(db)["pulse_id"] == newer.pulse_id and last_pulse(db)["complete"] is True


def test_an_older_tick_arriving_mid_run_leaves_the_newer_pulse_running(deps: Deps) -> None:
    db = deps.firestore
    seed(db, 2)
    now = datetime.now(UTC)
    running = pulses.pulse_id_for("9002", now - timedelta(seconds=5))
    pulses.begin(
        db,
        running,
        tick_message_id="9002",
        tick_time=now - timedelta(seconds=5),
        now=now,
        existing=None,
    )
    assert fan_out(deps, a_tick("9001", now - timedelta(seconds=30))).skipped_tick is (
        Skip.SUPERSEDED
    )
    record = doc(db, paths.pulse_doc(running))
    assert record is not None and record["state"] == "publishing" and not record.get("final")


def handle_all(worker: SyncWorker, messages: list[Any]) -> list[Result]:
    return [
        worker.handle(PubsubDelivery(m.message_id, m.data, dict(m.attributes), m.publish_time, 1))
        for m in messages
    ]


def test_a_tick_from_the_future_does_not_freeze_the_next_pulses(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    for uid in ("u-a", "u-b"):
        sim_tenant(simulator, db, uid, Scenario(kind="normal"))
    roster.rebuild(db)
    worker = SyncWorker(deps)
    now = datetime.now(UTC)
    ahead = fan_out(deps, a_tick("6000", now + timedelta(hours=1)))
    assert ahead.skipped_tick is Skip.FUTURE
    assert handle_all(worker, taken(project, timeout=2)) == []
    for message_id, at in (("6001", now - timedelta(seconds=2)), ("6002", now)):
        result = fan_out(deps, a_tick(message_id, at))
        assert result.published == 2
        assert handle_all(worker, taken(project)) == [Result.SYNCED, Result.SYNCED]
        assert pulses.rollup(db, result.pulse_id).success == 2  # type: ignore[union-attr]
    assert last_pulse(db)["pulse_id"] == result.pulse_id and last_pulse(db)["complete"]


def test_two_ticks_within_one_second_are_two_pulses(deps: Deps, project: str) -> None:
    db = deps.firestore
    eligible = seed(db, 2)
    second = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=3)
    # Message ids that sort the other way round as strings.
    first = fan_out(deps, a_tick("9", second.replace(microsecond=100_000)))
    then = fan_out(deps, a_tick("10", second.replace(microsecond=900_000)))
    assert first.pulse_id != then.pulse_id
    assert first.published == then.published == 2
    assert len(taken(project)) == 4
    assert last_pulse(db)["pulse_id"] == then.pulse_id
    later = doc(db, paths.pulse_doc(then.pulse_id))
    assert later is not None and not later.get("final")
    earlier = doc(db, paths.pulse_doc(first.pulse_id))
    assert earlier is not None and earlier["superseded_by"] == then.pulse_id
    succeed(db, then.pulse_id, eligible)
    assert pulses.rollup(db, then.pulse_id).complete  # type: ignore[union-attr]
    assert last_pulse(db)["pulse_id"] == then.pulse_id and last_pulse(db)["complete"]


def test_two_ticks_within_one_second_delivered_in_reverse(deps: Deps) -> None:
    db = deps.firestore
    seed(db, 2)
    second = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=3)
    then = fan_out(deps, a_tick("10", second.replace(microsecond=900_000)))
    first = fan_out(deps, a_tick("9", second.replace(microsecond=100_000)))
    assert first.skipped_tick is Skip.SUPERSEDED
    later = doc(db, paths.pulse_doc(then.pulse_id))
    assert later is not None and not later.get("final")
    assert last_pulse(db)["pulse_id"] == then.pulse_id


DELAY = 0.3


def test_results_of_a_killed_instance_are_rolled_up_by_another_within_the_delay(
    deps: Deps,
) -> None:
    db = deps.firestore
    seed(db, 2)
    pulse = fan_out(deps, a_tick("4004", datetime.now(UTC) - timedelta(seconds=1))).pulse_id
    survivor = RollupScheduler(lambda: db, DELAY)
    succeed(db, pulse, ["u-000"])
    survivor.request(pulse)
    wait_for(lambda: last_pulse(db).get("success_count") == 1, timeout=5)
    assert last_pulse(db)["complete"] is False
    # Another instance records the last result and is killed before its rollup runs.
    succeed(db, pulse, ["u-001"])
    recorded = time.monotonic()
    wait_for(lambda: last_pulse(db).get("complete") is True, timeout=5, interval=0.05)
    took = time.monotonic() - recorded
    assert took < 2 * DELAY + 1.0, took  # two delays, plus the emulator's answers
    assert last_pulse(db)["success_count"] == 2
    wait_for(lambda: survivor.watching() == set(), timeout=2)  # complete: it stops watching


def test_a_watch_stops_once_a_newer_pulse_is_shown(deps: Deps) -> None:
    db = deps.firestore
    seed(db, 2)
    now = datetime.now(UTC)
    old = fan_out(deps, a_tick("3001", now - timedelta(seconds=70))).pulse_id
    watcher = RollupScheduler(lambda: db, DELAY)
    succeed(db, old, ["u-000"])
    watcher.request(old)
    wait_for(lambda: last_pulse(db).get("success_count") == 1, timeout=5)
    assert old in watcher.watching()
    fan_out(deps, a_tick("3002", now - timedelta(seconds=10)))
    wait_for(lambda: watcher.watching() == set(), timeout=3)
    assert doc(db, paths.pulse_doc(old))["final"] is True  # type: ignore[index]
