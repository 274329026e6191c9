"""The push bridge on the real Pub/Sub emulator (pulls of several messages, batched answers):
exactly one delivery per message however slow the endpoint, never more requests than its
concurrency, redelivery with a growing ``deliveryAttempt`` until Pub/Sub dead-letters, and
deliveries in flight finishing on stop, the rest left to the next bridge."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import pytest

from agenttrader import topology
from devtools.localstack.push_bridge import PushBridge
from devtools.topology import apply_topology
from tests.pipeline_fixtures import drain_dead_letters, wait_for
from tests.push_endpoint import serve_push

pytestmark = pytest.mark.integration

FAST_RETRY = topology.RetryPolicy(minimum_backoff_seconds=0, maximum_backoff_seconds=1)


@dataclass
class Endpoint:
    """A push endpoint that records every request. Data ``fail`` answers 500; a delivery
    waits ``delay`` seconds, and waits for ``release`` when the data is ``hold``."""

    delay: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    max_running: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: dict[str, Any]) -> int:
        data = base64.b64decode(body["message"]["data"])
        with self.lock:
            self.bodies.append(body)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if data == b"hold":
                self.release.wait(timeout=30)
            time.sleep(self.delay)
            return 500 if data == b"fail" else 204
        finally:
            with self.lock:
                self.running -= 1

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(b["message"]["messageId"] for b in self.bodies)


@pytest.fixture
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    state = Endpoint()
    with serve_push(state.handle) as background:
        yield state, f"http://127.0.0.1:{background.port}/"
        state.release.set()


@pytest.fixture
def clients(
    pubsub_clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
) -> tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]:
    return pubsub_clients


def nothing_left(subscriber: pubsub_v1.SubscriberClient, path: str) -> bool:
    """No message is left to pull (an acked one is gone; a nacked one would come back)."""
    left = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=3)
    return list(left.received_messages) == []


def _publish(publisher: pubsub_v1.PublisherClient, topic: str, *data: bytes) -> list[str]:
    return [publisher.publish(topic, d).result(timeout=30) for d in data]


def test_every_message_is_delivered_exactly_once_to_a_slow_endpoint(
    project: str,
    clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
    endpoint: tuple[Endpoint, str],
) -> None:
    publisher, subscriber = clients
    state, url = endpoint
    state.delay = 0.35
    topic = publisher.topic_path(project, "slow-topic")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, "slow-sub"), topic=topic, ack_deadline_seconds=10
    )
    # 60 deliveries of 0.35 s, two at a time: the last one starts well after the ack deadline
    # (10 s) of the first pulls; a bridge that leased ahead would see leases lapse.
    ids = _publish(publisher, topic, *(f"m{i}".encode() for i in range(60)))

    bridge = PushBridge(project, "slow-sub", url, concurrency=2).start()
    try:
        wait_for(lambda: bridge.stats.acked >= len(ids), timeout=120)
        assert bridge._delivery_timeout() == pytest.approx(9.0)  # 90 % of the ack deadline
    finally:
        bridge.stop()

    assert state.ids() == Counter(ids)  # each exactly once
    assert state.max_running == 2  # never more requests than the concurrency
    stats = bridge.stats
    assert (stats.delivered, stats.acked, stats.nacked, stats.duplicates) == (60, 60, 0, 0)
    assert all("deliveryAttempt" not in b for b in state.bodies)  # no dead-letter policy
    assert nothing_left(subscriber, bridge.subscription_path)


def test_a_failing_message_is_redelivered_with_growing_attempts_then_dead_lettered(
    project: str,
    clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
    endpoint: tuple[Endpoint, str],
) -> None:
    publisher, subscriber = clients
    state, url = endpoint
    apply_topology(project, publisher, subscriber, retry_override=FAST_RETRY)
    topic = publisher.topic_path(project, topology.USER_SYNC)
    failing, fine = _publish(publisher, topic, b"fail", b"ok")

    bridge = PushBridge(project, topology.USER_SYNC_WORKER, url, concurrency=4).start()
    try:
        dead = drain_dead_letters(project, expect=1, timeout=90)
        wait_for(lambda: bridge.stats.delivered >= 6, timeout=30)
    finally:
        bridge.stop()

    assert [m.data for m in dead] == [b"fail"]  # Pub/Sub gives the dead letter an id of its own
    attempts: dict[str, list[int]] = {}
    for body in state.bodies:
        attempts.setdefault(body["message"]["messageId"], []).append(body["deliveryAttempt"])
    max_attempts = topology.subscription(topology.USER_SYNC_WORKER).dead_letter
    assert max_attempts is not None
    assert attempts == {
        failing: list(range(1, max_attempts.max_delivery_attempts + 1)),
        fine: [1],
    }
    stats = bridge.stats
    assert (stats.delivered, stats.acked, stats.nacked, stats.duplicates) == (6, 1, 5, 0)


def test_a_message_over_4_mib_is_delivered_and_so_are_those_pulled_with_it(
    project: str,
    clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
    endpoint: tuple[Endpoint, str],
) -> None:
    """Pub/Sub takes messages up to 10 MB, gRPC receives 4 MiB by default: a pull whose answer
    held a bigger message failed, every time, and the messages pulled with it stayed stuck."""
    publisher, subscriber = clients
    state, url = endpoint
    topic = publisher.topic_path(project, "big-topic")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, "big-sub"), topic=topic, ack_deadline_seconds=10
    )
    big = b"x" * (9 * 1024 * 1024)
    ids = _publish(publisher, topic, b"before", big, b"after")

    bridge = PushBridge(project, "big-sub", url, concurrency=8).start()
    try:
        wait_for(lambda: bridge.stats.acked >= len(ids), timeout=30)
    finally:
        bridge.stop()

    assert state.ids() == Counter(ids)  # each exactly once, the big one whole
    sizes = {
        b["message"]["messageId"]: len(base64.b64decode(b["message"]["data"])) for b in state.bodies
    }
    assert sizes == {ids[0]: 6, ids[1]: len(big), ids[2]: 5}
    assert bridge.stats.pull_errors == 0
    assert nothing_left(subscriber, bridge.subscription_path)


def test_stop_lets_a_delivery_in_flight_finish_and_acks_it(
    project: str,
    clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
    endpoint: tuple[Endpoint, str],
) -> None:
    publisher, subscriber = clients
    state, url = endpoint
    apply_topology(project, publisher, subscriber, retry_override=FAST_RETRY)
    _publish(publisher, publisher.topic_path(project, topology.USER_SYNC), b"hold")

    bridge = PushBridge(project, topology.USER_SYNC_WORKER, url, concurrency=4).start()
    wait_for(lambda: bridge.in_flight == 1, timeout=30)
    stopping = threading.Thread(target=bridge.stop)
    stopping.start()
    wait_for(bridge._stopping.is_set, timeout=10)
    state.release.set()  # the delivery finishes while the bridge stops
    stopping.join(timeout=30)

    assert not stopping.is_alive()
    assert (bridge.stats.delivered, bridge.stats.acked) == (1, 1)
    # Acked, not nacked: nothing is left to pull (a nack would be redelivered at once).
    assert nothing_left(subscriber, bridge.subscription_path)


def test_the_bridge_leases_only_what_it_delivers(
    project: str,
    clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
    endpoint: tuple[Endpoint, str],
) -> None:
    """While every thread is busy, the other messages stay available to any subscriber: none
    waits leased in a client-side queue, where its lease could lapse."""
    publisher, subscriber = clients
    state, url = endpoint
    topic = publisher.topic_path(project, "busy-topic")
    publisher.create_topic(name=topic)
    path = subscriber.subscription_path(project, "busy-sub")
    subscriber.create_subscription(name=path, topic=topic, ack_deadline_seconds=60)
    ids = _publish(publisher, topic, *([b"hold"] * 20))

    bridge = PushBridge(project, "busy-sub", url, concurrency=2).start()
    try:
        wait_for(lambda: bridge.in_flight == 2, timeout=30)
        taken: list[str] = []

        def take_the_rest() -> bool:
            response = subscriber.pull(request={"subscription": path, "max_messages": 20})
            received = list(response.received_messages)
            if received:
                subscriber.acknowledge(
                    request={"subscription": path, "ack_ids": [m.ack_id for m in received]}
                )
            taken.extend(m.message.message_id for m in received)
            return len(taken) >= 18

        wait_for(take_the_rest, timeout=30)
        state.release.set()
        wait_for(lambda: bridge.stats.acked == 2, timeout=30)
    finally:
        bridge.stop()

    assert len(taken) == 18
    assert sorted([*taken, *state.ids()]) == sorted(ids)
    assert bridge.stats.delivered == 2


def test_many_messages_at_higher_concurrency_arrive_exactly_once_over_the_ack_deadline(
    project: str,
    clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
    endpoint: tuple[Endpoint, str],
) -> None:
    """Pulls of several messages and batched answers: still one delivery per message when the
    whole run lasts longer than the ack deadline, and every ack reaches the emulator."""
    publisher, subscriber = clients
    state, url = endpoint
    state.delay = 0.3
    topic = publisher.topic_path(project, "batch-topic")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, "batch-sub"),
        topic=topic,
        ack_deadline_seconds=10,
    )
    # 300 deliveries of 0.3 s, 8 at a time: about 11 s, longer than the ack deadline.
    ids = _publish(publisher, topic, *(f"m{i}".encode() for i in range(300)))

    bridge = PushBridge(project, "batch-sub", url, concurrency=8).start()
    try:
        wait_for(lambda: bridge.stats.acked >= len(ids), timeout=180)
    finally:
        bridge.stop()

    assert state.ids() == Counter(ids)  # each exactly once
    assert state.max_running <= 8
    stats = bridge.stats
    assert (stats.delivered, stats.acked, stats.nacked, stats.duplicates) == (300, 300, 0, 0)
    assert stats.pull_errors == 0
    assert nothing_left(subscriber, bridge.subscription_path)


def test_a_stopped_bridge_leaves_the_rest_to_the_next_one_without_duplicates(
    project: str,
    clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
    endpoint: tuple[Endpoint, str],
) -> None:
    """Stopping drains the deliveries in flight and acks them; whatever else it pulled is
    nacked, so the next bridge delivers the rest, each message once over both."""
    publisher, subscriber = clients
    state, url = endpoint
    topic = publisher.topic_path(project, "handover-topic")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, "handover-sub"),
        topic=topic,
        ack_deadline_seconds=60,
    )
    ids = _publish(publisher, topic, *([b"hold"] * 10))

    first = PushBridge(project, "handover-sub", url, concurrency=4).start()
    wait_for(lambda: first.in_flight == 4, timeout=30)
    stopping = threading.Thread(target=first.stop)
    stopping.start()
    wait_for(first._stopping.is_set, timeout=10)
    state.release.set()  # the 4 deliveries finish while the bridge stops
    stopping.join(timeout=30)
    assert not stopping.is_alive()
    assert (first.stats.delivered, first.stats.acked, first.stats.nacked) == (4, 4, 0)

    second = PushBridge(project, "handover-sub", url, concurrency=4).start()
    try:
        wait_for(lambda: second.stats.acked >= 6, timeout=60)
    finally:
        second.stop()
    assert state.ids() == Counter(ids)  # 4 by the first bridge, 6 by the second, none twice
    assert (second.stats.delivered, second.stats.acked, second.stats.duplicates) == (6, 6, 0)
