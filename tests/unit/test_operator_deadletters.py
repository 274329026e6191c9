"""The dead-letter core against hand-written fakes of the Pub/Sub clients: decoding, filters,
the lease discipline (nothing acknowledged unless republished), refusals, dry run, interrupts,
pacing and purge."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from agenttrader.messages import Reason, SyncRequest
from console import deadletters as dlq
from console.hold import HoldSubscription, LeaseKeeper

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
TOPIC = "projects/p/topics/user-sync"


@dataclass
class FakeMessage:
    message_id: str
    data: bytes
    attributes: dict[str, str]
    publish_time: datetime


@dataclass
class FakeSubscriber:
    """Pub/Sub lease semantics in memory: a pull leases what is neither leased nor acked; a
    modify to 0 releases; an ack with a live ack id removes the message."""

    messages: dict[str, FakeMessage] = field(default_factory=dict)
    leases: dict[str, str] = field(default_factory=dict)  # ack id -> message id
    acked: list[str] = field(default_factory=list)
    extended: list[tuple[str, int]] = field(default_factory=list)
    pulls: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def pull(self, request: Any = None, *, retry: Any = None, timeout: Any = None) -> Any:
        self.pulls += 1
        leased = set(self.leases.values())
        free = [m for mid, m in self.messages.items() if mid not in leased]
        received = []
        for message in free[: request["max_messages"]]:
            ack_id = f"ack-{next(self._ids)}"
            self.leases[ack_id] = message.message_id
            received.append(SimpleNamespace(ack_id=ack_id, message=message))
        return SimpleNamespace(received_messages=received)

    def acknowledge(self, request: Any = None) -> None:
        for ack_id in request["ack_ids"]:
            message_id = self.leases.pop(ack_id, None)
            if message_id is not None:
                self.messages.pop(message_id, None)
                self.acked.append(message_id)

    def modify_ack_deadline(self, request: Any = None) -> None:
        for ack_id in request["ack_ids"]:
            if request["ack_deadline_seconds"] == 0:
                self.leases.pop(ack_id, None)
            else:
                self.extended.append((ack_id, request["ack_deadline_seconds"]))

    def held(self) -> set[str]:
        return set(self.messages)


@dataclass
class FakePublisher:
    """Futures resolve at once with a new id, or with ``fail``'s exception for chosen uids."""

    fail: Callable[[str], BaseException | None] = lambda _uid: None
    resolve: bool = True
    published: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def publish(self, topic: str, data: bytes, **attrs: str) -> concurrent.futures.Future[str]:
        body = json.loads(data)
        self.published.append((topic, body, attrs))
        future: concurrent.futures.Future[str] = concurrent.futures.Future()
        error = self.fail(body["uid"])
        if error is not None:
            future.set_exception(error)
        elif self.resolve:
            future.set_result(f"new-{len(self.published)}")
        return future

    def uids(self) -> list[str]:
        return [body["uid"] for _topic, body, _attrs in self.published]


def request_bytes(uid: str, reason: Reason = Reason.SCHEDULE, **fields: Any) -> bytes:
    return SyncRequest(uid, reason, NOW - timedelta(hours=2), **fields).to_bytes()


def worker_letter(
    message_id: str,
    uid: str,
    *,
    error_class: str = "AlpacaAuthError",
    age: timedelta = timedelta(minutes=10),
    data: bytes | None = None,
) -> FakeMessage:
    return FakeMessage(
        message_id,
        data if data is not None else request_bytes(uid, pulse_id="p1"),
        {
            "uid": uid,
            "source": "worker",
            "error_class": error_class,
            "error": "Alpaca refused the keys (401)",
            "reason": "schedule",
            "delivery_attempt": "1",
        },
        NOW - age,
    )


def pubsub_letter(message_id: str, uid: str, age: timedelta = timedelta(minutes=5)) -> FakeMessage:
    return FakeMessage(
        message_id,
        request_bytes(uid),
        {
            "uid": uid,
            "CloudPubSubDeadLetterSourceDeliveryCount": "5",
            "CloudPubSubDeadLetterSourceSubscription": "projects/p/subscriptions/user-sync-worker",
        },
        NOW - age,
    )


def subscriber_with(*messages: FakeMessage) -> FakeSubscriber:
    return FakeSubscriber(messages={m.message_id: m for m in messages})


def hold_of(subscriber: FakeSubscriber) -> HoldSubscription:
    return HoldSubscription(subscriber, "projects/p/subscriptions/user-sync-dead-letter-hold")


def replay(subscriber: FakeSubscriber, publisher: FakePublisher, **kwargs: Any) -> dlq.Report:
    filters = kwargs.pop("filters", dlq.Filters())
    return dlq.replay(hold_of(subscriber), publisher, TOPIC, filters, clock=lambda: NOW, **kwargs)


# --- decoding ----------------------------------------------------------------------------------


def test_decode_worker_dead_letter() -> None:
    letter = dlq.decode(worker_letter("m1", "alice"))
    assert letter.source == "worker"
    assert letter.uid == "alice"
    assert letter.error_class == "AlpacaAuthError"
    assert letter.delivery_attempts == 1
    assert letter.replay_count == 0
    assert letter.reason == "schedule"
    assert letter.age(NOW) == timedelta(minutes=10)
    assert letter.refusal(3, force=False) is None


def test_decode_pubsub_dead_letter() -> None:
    letter = dlq.decode(pubsub_letter("m1", "bob"))
    assert letter.source == "delivery-limit"
    assert letter.error_class == dlq.DELIVERY_LIMIT_ERROR_CLASS
    assert letter.delivery_attempts == 5
    assert letter.error == "Pub/Sub gave up after 5 delivery attempts on user-sync-worker"


def test_decode_malformed_body_keeps_the_attribute_uid() -> None:
    letter = dlq.decode(worker_letter("m1", "carol", error_class="MalformedMessage", data=b"{"))
    assert letter.request is None and letter.replay_count is None
    assert letter.uid == "carol"
    assert letter.decode_error and "not JSON" in letter.decode_error
    refusal = letter.refusal(3, force=True)
    assert refusal is not None and "cannot be replayed, only purged" in refusal


def test_body_uid_disagreeing_with_the_attribute_is_malformed() -> None:
    message = worker_letter("m1", "alice", data=request_bytes("mallory"))
    assert dlq.decode(message).request is None


def test_replay_request_keeps_the_first_reason_and_counts() -> None:
    message = worker_letter(
        "m1",
        "alice",
        data=request_bytes(
            "alice", Reason.REPLAY, replay_count=2, original_reason=Reason.FIRST_SYNC
        ),
    )
    request = dlq.decode(message).replay_request(NOW)
    assert request.reason is Reason.REPLAY
    assert request.replay_count == 3
    assert request.original_reason is Reason.FIRST_SYNC
    assert request.requested_at == NOW
    assert request.pulse_id is None


# --- filters -----------------------------------------------------------------------------------


def test_filters() -> None:
    alice = dlq.decode(worker_letter("m1", "alice", age=timedelta(hours=3)))
    bob = dlq.decode(pubsub_letter("m2", "bob", age=timedelta(minutes=5)))
    everything = dlq.Filters()
    assert everything.matches(alice, NOW) and everything.matches(bob, NOW)
    assert dlq.Filters(uids=frozenset({"alice"})).matches(alice, NOW)
    assert not dlq.Filters(uids=frozenset({"alice"})).matches(bob, NOW)
    by_class = dlq.Filters(error_classes=frozenset({"deliverylimitexceeded"}))
    assert by_class.matches(bob, NOW) and not by_class.matches(alice, NOW)
    assert dlq.Filters(sources=frozenset({"worker"})).matches(alice, NOW)
    assert not dlq.Filters(sources=frozenset({"worker"})).matches(bob, NOW)
    older = dlq.Filters(older_than=timedelta(hours=1))
    assert older.matches(alice, NOW) and not older.matches(bob, NOW)
    newer = dlq.Filters(newer_than=timedelta(hours=1))
    assert newer.matches(bob, NOW) and not newer.matches(alice, NOW)
    window = dlq.Filters(older_than=timedelta(minutes=1), newer_than=timedelta(hours=1))
    assert window.matches(bob, NOW) and not window.matches(alice, NOW)


def test_filters_that_select_nothing_are_refused() -> None:
    with pytest.raises(ValueError, match="older-than"):
        dlq.Filters(older_than=timedelta(hours=2), newer_than=timedelta(hours=1))
    with pytest.raises(ValueError, match="source"):
        dlq.Filters(sources=frozenset({"cosmic-ray"}))


# --- list --------------------------------------------------------------------------------------


def test_list_leaves_every_message_in_place() -> None:
    subscriber = subscriber_with(
        worker_letter("m1", "alice", age=timedelta(hours=1)),
        pubsub_letter("m2", "bob"),
        worker_letter("m3", "carol", age=timedelta(hours=2)),
    )
    listing = dlq.list_dead_letters(
        hold_of(subscriber), dlq.Filters(uids=frozenset({"alice", "carol"})), now=NOW
    )
    assert [letter.uid for letter in listing.letters] == ["carol", "alice"]  # oldest first
    assert listing.scanned == 3 and listing.exhausted
    assert subscriber.held() == {"m1", "m2", "m3"}
    assert not subscriber.leases and not subscriber.acked


def test_list_stops_at_the_limit() -> None:
    subscriber = subscriber_with(*(worker_letter(f"m{i}", f"u{i}") for i in range(5)))
    listing = dlq.list_dead_letters(hold_of(subscriber), dlq.Filters(), now=NOW, limit=2)
    assert len(listing.letters) == 2 and not listing.exhausted
    assert not subscriber.leases


def test_scan_deduplicates_a_redelivered_message() -> None:
    subscriber = subscriber_with(worker_letter("m1", "alice"))
    original_pull = subscriber.pull

    def pull_and_forget(request: Any = None, **kwargs: Any) -> Any:
        response = original_pull(request, **kwargs)
        subscriber.leases.clear()  # every lease lapses at once: the same message comes again
        return response

    subscriber.pull = pull_and_forget  # type: ignore[method-assign]
    listing = dlq.list_dead_letters(hold_of(subscriber), dlq.Filters(), now=NOW)
    assert [letter.message_id for letter in listing.letters] == ["m1"]
    assert listing.scanned == 1 and subscriber.pulls == 2


def test_depth_counts_without_consuming() -> None:
    subscriber = subscriber_with(*(worker_letter(f"m{i}", f"u{i}") for i in range(7)))
    depth = dlq.dead_letter_depth(hold_of(subscriber))
    assert depth.scanned == 7 and depth.exhausted
    assert len(subscriber.held()) == 7 and not subscriber.leases


# --- replay ------------------------------------------------------------------------------------


def test_replay_republishes_matching_and_acks_only_them() -> None:
    subscriber = subscriber_with(
        worker_letter("m1", "alice"), pubsub_letter("m2", "bob"), worker_letter("m3", "carol")
    )
    publisher = FakePublisher()
    report = replay(subscriber, publisher, filters=dlq.Filters(uids=frozenset({"alice", "bob"})))
    assert sorted(publisher.uids()) == ["alice", "bob"]
    for topic, body, attrs in publisher.published:
        assert topic == TOPIC
        assert attrs == {"uid": body["uid"]}
        assert body["reason"] == "replay" and body["replay_count"] == 1
        assert body["original_reason"] == "schedule"
        assert body["requested_at"] == "2025-03-04T12:00:00.000000Z"
        assert "pulse_id" not in body
    assert sorted(subscriber.acked) == ["m1", "m2"]
    assert subscriber.held() == {"m3"} and not subscriber.leases
    assert report.count(dlq.Status.REPLAYED) == 2 and report.skipped == 1


def test_a_failed_republish_is_not_acknowledged() -> None:
    subscriber = subscriber_with(worker_letter("m1", "alice"), worker_letter("m2", "bob"))
    publisher = FakePublisher(fail=lambda uid: RuntimeError("boom") if uid == "bob" else None)
    report = replay(subscriber, publisher)
    assert subscriber.acked == ["m1"]
    assert subscriber.held() == {"m2"} and not subscriber.leases
    failed = [i for i in report.items if i.status is dlq.Status.FAILED]
    assert [i.letter.uid for i in failed] == ["bob"] and "boom" in failed[0].detail


def test_an_unanswered_republish_is_not_acknowledged() -> None:
    subscriber = subscriber_with(worker_letter("m1", "alice"))
    report = replay(subscriber, FakePublisher(resolve=False), drain_timeout=0.05)
    assert not subscriber.acked and subscriber.held() == {"m1"} and not subscriber.leases
    assert report.count(dlq.Status.FAILED) == 1


def test_replay_stops_when_pubsub_keeps_failing() -> None:
    subscriber = subscriber_with(*(worker_letter(f"m{i}", f"u{i}") for i in range(8)))
    report = replay(subscriber, FakePublisher(fail=lambda _uid: RuntimeError("down")))
    assert report.aborted
    assert report.count(dlq.Status.FAILED) == dlq.MAX_CONSECUTIVE_FAILURES
    assert report.count(dlq.Status.NOT_ATTEMPTED) == 8 - dlq.MAX_CONSECUTIVE_FAILURES
    assert len(subscriber.held()) == 8 and not subscriber.leases


def test_replay_count_limit_and_force() -> None:
    tired = worker_letter(
        "m1",
        "alice",
        data=request_bytes("alice", Reason.REPLAY, replay_count=3, original_reason=Reason.SCHEDULE),
    )
    fresh = worker_letter(
        "m2",
        "bob",
        data=request_bytes("bob", Reason.REPLAY, replay_count=1, original_reason=Reason.SCHEDULE),
    )
    subscriber = subscriber_with(tired, fresh)
    publisher = FakePublisher()
    report = replay(subscriber, publisher)
    assert publisher.uids() == ["bob"]
    refused = [i for i in report.items if i.status is dlq.Status.REFUSED]
    assert [i.letter.uid for i in refused] == ["alice"]
    assert "already replayed 3 times (limit 3)" in refused[0].detail
    assert subscriber.held() == {"m1"} and not subscriber.leases

    report = replay(subscriber, publisher, force=True)
    assert publisher.uids() == ["bob", "alice"]
    assert publisher.published[-1][1]["replay_count"] == 4
    assert publisher.published[-1][1]["original_reason"] == "schedule"
    assert not subscriber.held()


def test_malformed_dead_letters_are_refused_even_with_force() -> None:
    subscriber = subscriber_with(worker_letter("m1", "alice", data=b"\xff"))
    publisher = FakePublisher()
    report = replay(subscriber, publisher, force=True)
    assert not publisher.published and subscriber.held() == {"m1"}
    assert report.items[0].status is dlq.Status.REFUSED
    assert "only purged" in report.items[0].detail


def test_dry_run_changes_nothing() -> None:
    subscriber = subscriber_with(worker_letter("m1", "alice"), pubsub_letter("m2", "bob"))
    publisher = FakePublisher()
    report = replay(subscriber, publisher, dry_run=True)
    assert not publisher.published and not subscriber.acked and not subscriber.leases
    assert subscriber.held() == {"m1", "m2"}
    assert report.dry_run and report.count(dlq.Status.WOULD_REPLAY) == 2
    assert {i.replay_count for i in report.items} == {1}


def test_interrupt_acknowledges_what_went_out_and_releases_the_rest() -> None:
    subscriber = subscriber_with(*(worker_letter(f"m{i}", f"u{i}") for i in range(6)))
    publisher = FakePublisher()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    clock = itertools.count()
    pacer = dlq.Pacer(1.0, monotonic=lambda: float(next(clock)) * 0.1, sleep=sleep)
    report = replay(subscriber, publisher, pacer=pacer)
    assert report.interrupted
    assert len(publisher.published) == 2
    assert len(subscriber.acked) == 2 and len(subscriber.held()) == 4
    assert not subscriber.leases
    assert report.count(dlq.Status.NOT_ATTEMPTED) == 4


def test_progress_is_reported_per_republish() -> None:
    subscriber = subscriber_with(
        worker_letter("m1", "alice"),
        worker_letter("m2", "bob", data=b"nope"),
        worker_letter("m3", "carol"),
    )
    seen: list[dlq.Progress] = []
    replay(subscriber, FakePublisher(), progress=seen.append)
    assert [(p.done, p.total, p.refused) for p in seen] == [(1, 2, 1), (2, 2, 1)]


def test_pacer_spaces_publishes_evenly() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    pacer = dlq.Pacer(5.0, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(4):
        pacer.wait()
    assert slept == [0.2, 0.2, 0.2]
    now[0] += 10  # a long pause earns no burst
    pacer.wait()
    pacer.wait()
    assert slept[-1] == 0.2
    unlimited = dlq.Pacer(None, sleep=lambda _s: pytest.fail("must not sleep"))
    unlimited.wait()


def test_lease_keeper_renews_held_leases() -> None:
    subscriber = FakeSubscriber()
    keeper = LeaseKeeper(hold_of(subscriber), seconds=60, interval=0.01)
    try:
        keeper.add("ack-1")
        deadline = time.monotonic() + 2
        while not subscriber.extended and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        keeper.stop()
    assert ("ack-1", 60) in subscriber.extended


# --- purge -------------------------------------------------------------------------------------


def test_purge_acks_only_matching_after_confirmation() -> None:
    subscriber = subscriber_with(
        worker_letter("m1", "alice", data=b"{"),
        worker_letter("m2", "bob"),
        pubsub_letter("m3", "x"),
    )
    asked: list[int] = []

    def confirm(letters: Any) -> bool:
        asked.append(len(letters))
        return True

    filters = dlq.Filters(sources=frozenset({"worker"}))
    report = dlq.purge(hold_of(subscriber), filters, now=NOW, confirm=confirm)
    assert asked == [2]
    assert sorted(subscriber.acked) == ["m1", "m2"]
    assert subscriber.held() == {"m3"} and not subscriber.leases
    assert report.count(dlq.Status.PURGED) == 2 and report.skipped == 1


def test_purge_not_confirmed_or_dry_run_deletes_nothing() -> None:
    subscriber = subscriber_with(worker_letter("m1", "alice"))
    cancelled = dlq.purge(hold_of(subscriber), dlq.Filters(), now=NOW, confirm=lambda _l: False)
    assert cancelled.cancelled
    dry = dlq.purge(
        hold_of(subscriber),
        dlq.Filters(),
        now=NOW,
        confirm=lambda _l: pytest.fail("a dry run asks nothing"),
        dry_run=True,
    )
    assert dry.count(dlq.Status.WOULD_PURGE) == 1
    assert subscriber.held() == {"m1"} and not subscriber.acked and not subscriber.leases
