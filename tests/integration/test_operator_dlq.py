"""``agenttrader dlq`` against the real Pub/Sub emulator, with crafted dead letters: filters
select exactly the right messages, a dry run changes nothing, the replay-count limit holds, and
a replay killed mid-way loses no message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import pytest
from google.protobuf import duration_pb2

from agenttrader import topology
from agenttrader.messages import Reason, SyncRequest
from console import deadletters as dlq
from console.hold import HoldSubscription
from devtools.topology import apply_topology
from operations import cli
from tests.pipeline_fixtures import wait_for

pytestmark = pytest.mark.integration
AGENTTRADER = Path(__file__).parents[2] / ".venv" / "bin" / "agenttrader"
TAP = "user-sync-tap"


class PubSub:
    """The emulator's clients for one test project, with the topology applied and a tap
    subscription that sees everything published to ``user-sync``."""

    def __init__(self, project: str, hold_ack_deadline: int | None = None) -> None:
        self.project = project
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        if hold_ack_deadline is not None:
            # Created before the topology, which then leaves it be: a short ack deadline lets
            # the leases of a killed process lapse within the test's time.
            self.publisher.create_topic(name=self.topic(topology.USER_SYNC_DEAD_LETTER))
            self.subscriber.create_subscription(
                request={
                    "name": self.sub(topology.USER_SYNC_DEAD_LETTER_HOLD),
                    "topic": self.topic(topology.USER_SYNC_DEAD_LETTER),
                    "ack_deadline_seconds": hold_ack_deadline,
                    "message_retention_duration": duration_pb2.Duration(seconds=86_400),
                }
            )
        apply_topology(project, self.publisher, self.subscriber)
        self.subscriber.create_subscription(
            request={"name": self.sub(TAP), "topic": self.topic(topology.USER_SYNC)}
        )
        self.hold = HoldSubscription(self.subscriber, self.sub(topology.USER_SYNC_DEAD_LETTER_HOLD))

    def topic(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def sub(self, name: str) -> str:
        return f"projects/{self.project}/subscriptions/{name}"

    def dead_letter(self, data: bytes, **attributes: str) -> str:
        future = self.publisher.publish(
            self.topic(topology.USER_SYNC_DEAD_LETTER), data, **attributes
        )
        return str(future.result(timeout=30))

    def held(self) -> dict[str, dlq.DeadLetter]:
        """Every held dead letter by message id (the operator's own non-destructive listing)."""
        listing = dlq.list_dead_letters(self.hold, dlq.Filters(), now=datetime.now(UTC))
        return {letter.message_id: letter for letter in listing.letters}

    def tapped(self) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """Everything republished to ``user-sync`` since the last call (body, attributes)."""
        got: list[tuple[dict[str, Any], dict[str, str]]] = []
        tap = HoldSubscription(self.subscriber, self.sub(TAP))
        while received := tap.pull():
            tap.ack([r.ack_id for r in received])
            got += [(json.loads(r.message.data), dict(r.message.attributes)) for r in received]
        return got

    def close(self) -> None:
        self.subscriber.close()
        self.publisher.stop()


@pytest.fixture
def pubsub(emulator_env: dict[str, str], project: str) -> Iterator[PubSub]:
    clients = PubSub(project)
    yield clients
    clients.close()


def body(uid: str, reason: Reason = Reason.SCHEDULE, **fields: Any) -> bytes:
    requested_at = datetime.now(UTC) - timedelta(minutes=5)
    return SyncRequest(uid, reason, requested_at, **fields).to_bytes()


def worker_attributes(uid: str, error_class: str = "AlpacaAuthError") -> dict[str, str]:
    return {
        "uid": uid,
        "source": "worker",
        "error_class": error_class,
        "error": f"{error_class} for {uid}",
        "reason": "schedule",
        "failed_at": datetime.now(UTC).isoformat(),
        "original_message_id": "42",
        "delivery_attempt": "1",
    }


def test_filters_select_exactly_the_right_messages(pubsub: PubSub) -> None:
    older = {
        pubsub.dead_letter(body("alice"), **worker_attributes("alice")): "alice",
        pubsub.dead_letter(body("bob"), **worker_attributes("bob", "MissingKeys")): "bob",
        pubsub.dead_letter(
            body("carol"),
            uid="carol",
            CloudPubSubDeadLetterSourceDeliveryCount="5",
            CloudPubSubDeadLetterSourceSubscription=pubsub.sub(topology.USER_SYNC_WORKER),
        ): "carol",
    }
    time.sleep(0.6)
    middle = datetime.now(UTC)
    time.sleep(0.6)
    newer = {
        pubsub.dead_letter(body("alice"), **worker_attributes("alice")): "alice",
        pubsub.dead_letter(body("dave"), **worker_attributes("dave")): "dave",
        pubsub.dead_letter(b"{not json", **worker_attributes("erin", "MalformedMessage")): "erin",
    }
    # An hour later, the first batch is just over an hour old and the second just under.
    later = middle + timedelta(hours=1)

    def listed(**filters: Any) -> set[str]:
        listing = dlq.list_dead_letters(pubsub.hold, dlq.Filters(**filters), now=later)
        return {letter.message_id for letter in listing.letters}

    assert listed() == set(older) | set(newer)
    assert listed(uids=frozenset({"alice"})) == {
        m for m, u in {**older, **newer}.items() if u == "alice"
    }
    assert listed(older_than=timedelta(hours=1)) == set(older)
    assert listed(newer_than=timedelta(hours=1)) == set(newer)
    assert listed(error_classes=frozenset({"MissingKeys"})) == {
        m for m, u in older.items() if u == "bob"
    }
    assert listed(sources=frozenset({"delivery-limit"})) == {
        m for m, u in older.items() if u == "carol"
    }

    chosen = dlq.Filters(
        error_classes=frozenset({"alpacaautherror"}), newer_than=timedelta(hours=1)
    )
    report = dlq.replay(
        pubsub.hold,
        pubsub.publisher,
        pubsub.topic(topology.USER_SYNC),
        chosen,
        clock=lambda: later,
    )
    replayed = {m for m, u in newer.items() if u in {"alice", "dave"}}
    assert {
        i.letter.message_id for i in report.items if i.status is dlq.Status.REPLAYED
    } == replayed
    assert report.skipped == 4
    assert sorted(b["uid"] for b, _attrs in pubsub.tapped()) == ["alice", "dave"]
    assert set(pubsub.held()) == (set(older) | set(newer)) - replayed


def test_list_cli_json(pubsub: PubSub, capsys: pytest.CaptureFixture[str]) -> None:
    message_id = pubsub.dead_letter(body("alice"), **worker_attributes("alice"))
    pubsub.dead_letter(body("bob"), **worker_attributes("bob"))
    assert cli.main(["dlq", "list", "--uid", "alice", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["scanned"] == 2 and listing["exhausted"]
    (only,) = listing["dead_letters"]
    assert only["message_id"] == message_id and only["uid"] == "alice"
    assert only["source"] == "worker" and only["error_class"] == "AlpacaAuthError"
    assert only["replay_count"] == 0 and only["delivery_attempts"] == 1
    assert cli.main(["dlq", "list"]) == 0
    table = capsys.readouterr().out
    assert "alice" in table and "bob" in table and "2 matching of 2 held" in table
    assert len(pubsub.held()) == 2


def test_dry_run_changes_nothing(pubsub: PubSub, capsys: pytest.CaptureFixture[str]) -> None:
    ids = {pubsub.dead_letter(body(uid), **worker_attributes(uid)) for uid in ("a", "b", "c")}
    assert cli.main(["dlq", "replay", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: would replay 3; nothing was changed" in out
    assert pubsub.tapped() == []
    started = time.monotonic()
    assert set(pubsub.held()) == ids  # released at once, not after an ack deadline
    assert time.monotonic() - started < 10


def test_replay_count_limit_holds_unless_forced(
    pubsub: PubSub, capsys: pytest.CaptureFixture[str]
) -> None:
    tired = pubsub.dead_letter(
        body("tired", Reason.REPLAY, replay_count=3, original_reason=Reason.FIRST_SYNC),
        **worker_attributes("tired"),
    )
    pubsub.dead_letter(
        body("fresh", Reason.REPLAY, replay_count=1, original_reason=Reason.SCHEDULE),
        **worker_attributes("fresh"),
    )
    assert cli.main(["dlq", "replay", "--rate", "0"]) == 0
    out = capsys.readouterr().out
    assert "replayed 1, refused 1" in out and "already replayed 3 times (limit 3)" in out
    ((fresh, attrs),) = pubsub.tapped()
    assert attrs == {"uid": "fresh"}
    assert fresh["reason"] == "replay" and fresh["replay_count"] == 2
    assert fresh["original_reason"] == "schedule"
    assert set(pubsub.held()) == {tired}

    assert cli.main(["dlq", "replay", "--uid", "tired", "--force", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"] == {"replayed": 1}
    ((forced, _attrs),) = pubsub.tapped()
    assert forced["uid"] == "tired" and forced["replay_count"] == 4
    assert forced["original_reason"] == "first_sync"
    assert pubsub.held() == {}


def test_purge_with_yes_deletes_only_matching(
    pubsub: PubSub, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = pubsub.dead_letter(body("keep"), **worker_attributes("keep"))
    pubsub.dead_letter(b"\x00garbage", **worker_attributes("junk", "MalformedMessage"))
    assert cli.main(["dlq", "purge", "--error-class", "MalformedMessage", "--yes"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert set(pubsub.held()) == {keep}


def test_replay_killed_midway_loses_nothing(emulator_env: dict[str, str], project: str) -> None:
    pubsub = PubSub(project, hold_ack_deadline=10)
    try:
        uids = [f"user-{i:02d}" for i in range(20)]
        for uid in uids:
            pubsub.dead_letter(body(uid), **worker_attributes(uid))
        env = {**os.environ, **emulator_env}
        process = subprocess.Popen(
            [str(AGENTTRADER), "dlq", "replay", "--rate", "5"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stderr or []), daemon=True)
        reader.start()
        try:
            # Kill it once it has demonstrably been republishing (progress lines), mid-way.
            wait_for(lambda: any(line.startswith("progress") for line in lines), timeout=30)
            time.sleep(0.3)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            reader.join(timeout=10)
            if process.stderr is not None:
                process.stderr.close()
        assert process.returncode == -signal.SIGKILL

        republished: set[str] = set()
        held: dict[str, dlq.DeadLetter] = {}

        def accounted() -> bool:
            republished.update(b["uid"] for b, _attrs in pubsub.tapped())
            held.clear()
            held.update(pubsub.held())
            return {letter.uid for letter in held.values()} | republished >= set(uids)

        # The killed process's leases lapse after the hold subscription's ack deadline.
        wait_for(accounted, timeout=30, interval=1.0)
        assert len(held) + len(republished) >= len(uids)
        assert 0 < len(republished) < len(uids), "the kill did not land mid-way"
        held_uids = [letter.uid for letter in held.values()]
        assert len(held_uids) == len(set(held_uids)), "a dead letter was duplicated"
    finally:
        pubsub.close()
