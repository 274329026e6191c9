"""The Pub/Sub topology applied to the real emulator: names, policies, idempotency, and a
message nacked until Pub/Sub itself dead-letters it."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import pytest

from agenttrader import topology
from agenttrader.messages import Reason, SyncRequest
from devtools.topology import apply_topology

pytestmark = pytest.mark.integration

FAST_RETRY = topology.RetryPolicy(minimum_backoff_seconds=0, maximum_backoff_seconds=1)


@pytest.fixture
def clients(
    pubsub_clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient],
) -> tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]:
    return pubsub_clients


def _seconds(value: Any) -> float:
    """A proto-plus Duration reads back as a timedelta (or a Duration message)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value.seconds) + value.nanos / 1e9


def test_apply_creates_everything_once(
    project: str, clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]
) -> None:
    publisher, subscriber = clients

    first = apply_topology(project, publisher, subscriber)
    second = apply_topology(project, publisher, subscriber)

    assert sorted(first) == sorted(
        [*topology.TOPICS, *(sub.name for sub in topology.SUBSCRIPTIONS)]
    )
    assert second == []
    topics = {t.name for t in publisher.list_topics(request={"project": f"projects/{project}"})}
    assert topics == {publisher.topic_path(project, name) for name in topology.TOPICS}
    subs = {
        s.name for s in subscriber.list_subscriptions(request={"project": f"projects/{project}"})
    }
    assert subs == {subscriber.subscription_path(project, s.name) for s in topology.SUBSCRIPTIONS}


def test_names_are_the_design_contract() -> None:
    assert topology.TOPICS == ("sync-tick", "user-sync", "user-sync-dead-letter")
    assert {(s.name, s.topic, s.push_target) for s in topology.SUBSCRIPTIONS} == {
        ("sync-tick-publisher", "sync-tick", "publish_user_syncs"),
        ("user-sync-worker", "user-sync", "sync_user"),
        ("user-sync-dead-letter-hold", "user-sync-dead-letter", None),
    }


def test_subscriptions_have_the_declared_policies(
    project: str, clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]
) -> None:
    publisher, subscriber = clients
    apply_topology(project, publisher, subscriber)

    for declared in topology.SUBSCRIPTIONS:
        actual = subscriber.get_subscription(
            subscription=subscriber.subscription_path(project, declared.name)
        )

        assert actual.topic == publisher.topic_path(project, declared.topic)
        assert actual.ack_deadline_seconds == declared.ack_deadline_seconds
        assert _seconds(actual.message_retention_duration) == declared.message_retention_seconds
        # Without push endpoints every subscription is a pull subscription (the push bridge).
        assert actual.push_config.push_endpoint == ""
        if declared.retry:
            assert _seconds(actual.retry_policy.minimum_backoff) == (
                declared.retry.minimum_backoff_seconds
            )
            assert _seconds(actual.retry_policy.maximum_backoff) == (
                declared.retry.maximum_backoff_seconds
            )
        else:
            assert "retry_policy" not in actual
        if declared.dead_letter:
            assert actual.dead_letter_policy.dead_letter_topic == publisher.topic_path(
                project, declared.dead_letter.topic
            )
            assert actual.dead_letter_policy.max_delivery_attempts == (
                declared.dead_letter.max_delivery_attempts
            )
        else:
            assert "dead_letter_policy" not in actual


def test_worker_subscription_dead_letters_after_five_attempts() -> None:
    worker = topology.subscription(topology.USER_SYNC_WORKER)

    assert worker.dead_letter == topology.DeadLetterPolicy("user-sync-dead-letter", 5)
    assert worker.retry is not None


def test_push_endpoints_and_retry_override(
    project: str, clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]
) -> None:
    publisher, subscriber = clients

    apply_topology(
        project,
        publisher,
        subscriber,
        push_endpoints={"sync_user": "http://127.0.0.1:9/sync_user", "publish_user_syncs": None},
        retry_override=FAST_RETRY,
    )

    def get(name: str) -> Any:
        return subscriber.get_subscription(subscription=subscriber.subscription_path(project, name))

    worker = get(topology.USER_SYNC_WORKER)
    assert worker.push_config.push_endpoint == "http://127.0.0.1:9/sync_user"
    assert get(topology.SYNC_TICK_PUBLISHER).push_config.push_endpoint == ""
    assert get(topology.USER_SYNC_DEAD_LETTER_HOLD).push_config.push_endpoint == ""
    for name in (topology.USER_SYNC_WORKER, topology.SYNC_TICK_PUBLISHER):
        policy = get(name).retry_policy
        # A zero minimum backoff is accepted (and reads back as zero, not the 10 s default).
        assert _seconds(policy.minimum_backoff) == 0
        assert _seconds(policy.maximum_backoff) == 1
    # The override replaces retry policies; it does not add one to the hold subscription.
    assert "retry_policy" not in get(topology.USER_SYNC_DEAD_LETTER_HOLD)


def _pull(subscriber: pubsub_v1.SubscriberClient, path: str) -> list[Any]:
    response = subscriber.pull(
        request={"subscription": path, "max_messages": 10, "return_immediately": True},
        timeout=5,
    )
    return list(response.received_messages)


def test_nacked_message_reaches_the_dead_letter_hold(
    project: str, clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]
) -> None:
    publisher, subscriber = clients
    apply_topology(project, publisher, subscriber, retry_override=FAST_RETRY)
    request = SyncRequest.now("user-dlq", Reason.SCHEDULE)
    worker = subscriber.subscription_path(project, topology.USER_SYNC_WORKER)
    hold = subscriber.subscription_path(project, topology.USER_SYNC_DEAD_LETTER_HOLD)
    message_id = publisher.publish(
        publisher.topic_path(project, topology.USER_SYNC),
        request.to_bytes(),
        **request.attributes(),
    ).result(timeout=10)

    attempts: list[int] = []
    dead: list[Any] = []
    deadline = time.monotonic() + 40
    while not dead and time.monotonic() < deadline:
        received = _pull(subscriber, worker)
        for message in received:
            assert message.message.message_id == message_id
            attempts.append(message.delivery_attempt)
        if received:
            subscriber.modify_ack_deadline(
                request={
                    "subscription": worker,
                    "ack_ids": [m.ack_id for m in received],
                    "ack_deadline_seconds": 0,
                }
            )
        dead = _pull(subscriber, hold)
        if not received and not dead:
            time.sleep(0.2)

    assert dead, f"not dead-lettered within the deadline; delivery attempts seen: {attempts}"
    assert attempts == [1, 2, 3, 4, 5]
    (held,) = dead
    subscriber.acknowledge(request={"subscription": hold, "ack_ids": [held.ack_id]})
    assert held.message.data == request.to_bytes()
    assert SyncRequest.from_bytes(held.message.data, dict(held.message.attributes)) == request
    attributes = dict(held.message.attributes)
    assert attributes["uid"] == "user-dlq"
    assert attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert attributes["CloudPubSubDeadLetterSourceSubscription"] == topology.USER_SYNC_WORKER
    # Once dead-lettered it is no longer delivered to the worker.
    assert _pull(subscriber, worker) == []


def test_applying_with_endpoints_later_converges_to_push(
    project: str, clients: tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]
) -> None:
    publisher, subscriber = clients
    apply_topology(project, publisher, subscriber)  # pull everywhere: no URLs yet
    endpoint = "http://127.0.0.1:9/publish"
    changed = apply_topology(
        project, publisher, subscriber, push_endpoints={"publish_user_syncs": endpoint}
    )
    assert changed == [topology.SYNC_TICK_PUBLISHER]
    sub = subscriber.get_subscription(
        subscription=subscriber.subscription_path(project, topology.SYNC_TICK_PUBLISHER)
    )
    assert sub.push_config.push_endpoint == endpoint
    assert (
        apply_topology(
            project, publisher, subscriber, push_endpoints={"publish_user_syncs": endpoint}
        )
        == []
    )
