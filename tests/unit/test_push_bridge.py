"""The push bridge without an emulator: the push body, pulls sized to the idle threads against a
hand-written subscriber, answers of a stop, failing answer requests, an unreachable emulator."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core.exceptions import ServiceUnavailable
from google.pubsub_v1.types import PubsubMessage, PullResponse, ReceivedMessage, Subscription

from devtools.background_server import BackgroundServer
from devtools.emulators import free_port
from devtools.localstack.push_bridge import PushBridge, push_body
from tests.pipeline_fixtures import wait_for
from tests.push_endpoint import serve_push

SUBSCRIPTION = "projects/demo-x/subscriptions/user-sync-worker"


def _received(attempt: int) -> ReceivedMessage:
    return ReceivedMessage(
        ack_id="ack-1",
        delivery_attempt=attempt,
        message=PubsubMessage(
            data=b'{"uid": "u1"}',
            attributes={"uid": "u1"},
            message_id="42",
            publish_time=datetime(2026, 11, 27, 8, 0, 1, 250000, tzinfo=UTC),
        ),
    )


@pytest.mark.parametrize("raw", [False, True])
def test_push_body_is_what_pubsub_push_sends(raw: bool) -> None:
    received = _received(3)
    body = push_body(SUBSCRIPTION, ReceivedMessage.pb(received) if raw else received)
    assert body == {
        "subscription": SUBSCRIPTION,
        "message": {
            "data": base64.b64encode(b'{"uid": "u1"}').decode(),
            "attributes": {"uid": "u1"},
            "messageId": "42",
            "message_id": "42",
            "publishTime": "2026-11-27T08:00:01.250000Z",
            "publish_time": "2026-11-27T08:00:01.250000Z",
        },
        "deliveryAttempt": 3,
    }


def test_push_body_leaves_out_the_attempt_pubsub_does_not_count() -> None:
    # Without a dead-letter policy Pub/Sub counts no attempts (the field is 0).
    assert "deliveryAttempt" not in push_body(SUBSCRIPTION, _received(0))


@pytest.mark.parametrize(("concurrency", "timeout"), [(0, 60.0), (4, 0.0)])
def test_bad_settings_are_refused(
    concurrency: int, timeout: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    with pytest.raises(ValueError, match=r"concurrency|timeout"):
        PushBridge(
            "demo-x",
            "user-sync-worker",
            "http://127.0.0.1:9/",
            concurrency=concurrency,
            timeout=timeout,
        )


class FakeSubscriber:
    """A subscription in memory. A pull takes up to ``max_messages`` of the published ones,
    waiting for one like the emulator does (until one is published, when ``hold`` is None)."""

    def __init__(self, hold: float | None = 0.2) -> None:
        self.hold = hold
        self.cond = threading.Condition()
        self.available: list[ReceivedMessage] = []
        self.pull_sizes: list[int] = []
        self.pulled: list[str] = []
        self.pulling = 0
        self.acked: list[str] = []
        self.nacked: list[str] = []
        self.failed_acks: list[str] = []
        self.ack_error: Exception | None = None
        self.closed = False

    def publish(self, *data: bytes) -> list[str]:
        with self.cond:
            start = len(self.pulled) + len(self.available)
            ids = [str(start + i) for i in range(len(data))]
            self.available += [
                ReceivedMessage(
                    ack_id=f"ack-{id_}",
                    message=PubsubMessage(data=d, message_id=id_, publish_time=datetime.now(UTC)),
                )
                for id_, d in zip(ids, data, strict=True)
            ]
            self.cond.notify_all()
            return ids

    def subscription_path(self, project: str, subscription: str) -> str:
        return f"projects/{project}/subscriptions/{subscription}"

    def get_subscription(self, *, subscription: str, timeout: float, retry: Any) -> Subscription:
        return Subscription(name=subscription, topic="projects/p/topics/t", ack_deadline_seconds=10)

    def pull(self, *, request: dict[str, Any], timeout: float, retry: Any) -> PullResponse:
        with self.cond:
            self.pull_sizes.append(request["max_messages"])
            self.pulling += 1
            try:
                self.cond.wait_for(lambda: self.available, timeout=self.hold)
            finally:
                self.pulling -= 1
            taken = self.available[: request["max_messages"]]
            self.available = self.available[len(taken) :]
            self.pulled += [m.message.message_id for m in taken]
            return PullResponse(received_messages=taken)

    def acknowledge(self, *, request: dict[str, Any], timeout: float, retry: Any) -> None:
        with self.cond:
            if self.ack_error is not None:
                self.failed_acks += request["ack_ids"]
                raise self.ack_error
            self.acked += request["ack_ids"]

    def modify_ack_deadline(self, *, request: dict[str, Any], timeout: float, retry: Any) -> None:
        assert request["ack_deadline_seconds"] == 0
        with self.cond:
            self.nacked += request["ack_ids"]

    def close(self) -> None:
        self.closed = True

    def count(self, name: str) -> int:
        with self.cond:
            return len(getattr(self, name))


class Endpoint:
    """Answers 204, after ``release`` is set when ``hold``; records the message ids."""

    def __init__(self, hold: bool = False) -> None:
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.ids: list[str] = []
        self.lock = threading.Lock()

    def handle(self, body: dict[str, Any]) -> int:
        with self.lock:
            self.ids.append(body["message"]["messageId"])
        self.release.wait(timeout=30)
        return 204


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[tuple[BackgroundServer, Endpoint]] = []

    def start(state: Endpoint) -> str:
        background = serve_push(state.handle).start()
        servers.append((background, state))
        return f"http://127.0.0.1:{background.port}/"

    yield start
    for background, state in servers:
        state.release.set()
        background.stop()


def _bridge(fake: FakeSubscriber, url: str, concurrency: int) -> PushBridge:
    return PushBridge(
        "demo-x", "user-sync-worker", url, concurrency=concurrency, subscriber=fake
    ).start()


def test_pulls_ask_for_no_more_than_the_idle_threads_and_lease_nothing_more(
    serve: Any,
) -> None:
    fake, endpoint = FakeSubscriber(), Endpoint(hold=True)
    ids = fake.publish(*[b"m"] * 10)
    bridge = _bridge(fake, serve(endpoint), concurrency=4)
    try:
        wait_for(lambda: bridge.in_flight == 4, timeout=30)
        # Every thread is busy: nothing more was pulled, the other 6 stay in the subscription.
        assert fake.count("pulled") == 4
        assert fake.count("available") == 6
        assert all(1 <= size <= 4 for size in fake.pull_sizes)
        endpoint.release.set()
        wait_for(lambda: bridge.stats.acked == 10, timeout=30)
    finally:
        bridge.stop()
    assert sorted(fake.acked) == sorted(f"ack-{i}" for i in ids)
    assert fake.nacked == []
    assert sorted(endpoint.ids, key=int) == ids
    stats = bridge.stats
    assert (stats.delivered, stats.acked, stats.nacked, stats.duplicates) == (10, 10, 0, 0)
    assert stats.pulls == len(fake.pull_sizes)
    assert 1 <= stats.answer_requests <= 10
    assert fake.closed


def test_a_pull_asks_for_at_most_32_messages(serve: Any) -> None:
    fake, endpoint = FakeSubscriber(), Endpoint()
    fake.publish(*[b"m"] * 100)
    bridge = _bridge(fake, serve(endpoint), concurrency=64)
    try:
        wait_for(lambda: bridge.stats.acked == 100, timeout=60)
    finally:
        bridge.stop()
    assert max(fake.pull_sizes) <= 32
    assert sorted(endpoint.ids, key=int) == [str(i) for i in range(100)]


def test_messages_pulled_while_stopping_are_nacked_not_delivered(serve: Any) -> None:
    fake, endpoint = FakeSubscriber(hold=None), Endpoint()
    bridge = _bridge(fake, serve(endpoint), concurrency=4)
    wait_for(lambda: fake.pulling == 1, timeout=30)
    stopping = threading.Thread(target=bridge.stop)
    stopping.start()
    wait_for(bridge._stopping.is_set, timeout=10)
    ids = fake.publish(b"a", b"b")  # the pull under way brings them now
    stopping.join(timeout=30)
    assert not stopping.is_alive()
    assert sorted(fake.nacked) == [f"ack-{i}" for i in ids]  # handed back by the stop's flush
    assert fake.acked == []
    assert endpoint.ids == []
    assert bridge.stats.delivered == 0
    assert not any(t.is_alive() for t in bridge._threads)


def test_a_failing_ack_request_is_logged_once_and_the_bridge_carries_on(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devtools.localstack.push_bridge")
    fake, endpoint = FakeSubscriber(), Endpoint()
    fake.ack_error = ServiceUnavailable("emulator restarting")
    bridge = _bridge(fake, serve(endpoint), concurrency=4)
    try:
        fake.publish(b"a", b"b", b"c")
        wait_for(lambda: fake.count("failed_acks") == 3, timeout=30)
        fake.publish(b"d")
        wait_for(lambda: fake.count("failed_acks") == 4, timeout=30)
        with fake.cond:
            fake.ack_error = None
        (last,) = fake.publish(b"e")
        wait_for(lambda: fake.count("acked") == 1, timeout=30)
    finally:
        bridge.stop()
    # The lost acks mean redeliveries (by Pub/Sub, after the lease), not a crash or a retry loop.
    assert fake.acked == [f"ack-{last}"]
    assert bridge.stats.acked == 5
    assert all(t.is_alive() is False for t in bridge._threads)
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([m for m in messages if "acknowledge failed" in m]) == 1, messages
    assert "acknowledge failed (ServiceUnavailable" in messages[0]
    assert "push bridge: acknowledge works again" in messages


def test_an_unreachable_emulator_is_logged_once_and_retried_by_the_puller_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nobody listens
    caplog.set_level(logging.INFO, logger="devtools.localstack.push_bridge")
    bridge = PushBridge("demo-x", "user-sync-worker", "http://127.0.0.1:9/", concurrency=8)
    bridge.start()
    try:
        wait_for(lambda: bridge.stats.pull_errors >= 4, timeout=30)
        # One thread pulls; the 8 delivery threads wait, idle, for messages.
        assert [t.name for t in bridge._threads].count("push-bridge-pull") == 1
        wait_for(lambda: bridge._handoff.free == 8, timeout=30)
        assert all(t.is_alive() for t in bridge._threads)
    finally:
        bridge.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "pull failed (ServiceUnavailable" in warnings[0].getMessage()
    assert not any(t.is_alive() for t in bridge._threads)
    assert bridge.stats.delivered == 0
