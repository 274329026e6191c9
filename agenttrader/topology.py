"""The Pub/Sub topology, declared once (DESIGN.md's table).

The local stack applies it to the emulator (:func:`apply`); the deploy tooling renders the same
declaration into ``gcloud`` commands. Names are contracts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

SYNC_TICK = "sync-tick"
USER_SYNC = "user-sync"
USER_SYNC_DEAD_LETTER = "user-sync-dead-letter"

SYNC_TICK_PUBLISHER = "sync-tick-publisher"
USER_SYNC_WORKER = "user-sync-worker"
USER_SYNC_DEAD_LETTER_HOLD = "user-sync-dead-letter-hold"

TOPICS: tuple[str, ...] = (SYNC_TICK, USER_SYNC, USER_SYNC_DEAD_LETTER)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between redeliveries of a nacked message."""

    minimum_backoff_seconds: int
    maximum_backoff_seconds: int


@dataclass(frozen=True)
class DeadLetterPolicy:
    """After ``max_delivery_attempts`` Pub/Sub forwards the message to ``topic``."""

    topic: str
    max_delivery_attempts: int


@dataclass(frozen=True)
class Subscription:
    """One subscription; ``push_target`` names the function it pushes to (``None``: pull)."""

    name: str
    topic: str
    push_target: str | None
    ack_deadline_seconds: int
    message_retention_seconds: int
    retry: RetryPolicy | None = None
    dead_letter: DeadLetterPolicy | None = None


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(
        name=SYNC_TICK_PUBLISHER,
        topic=SYNC_TICK,
        push_target="publish_user_syncs",
        ack_deadline_seconds=300,
        # A tick older than this is useless: the next one is a minute away.
        message_retention_seconds=600,
        retry=RetryPolicy(10, 60),
    ),
    Subscription(
        name=USER_SYNC_WORKER,
        topic=USER_SYNC,
        push_target="sync_user",
        # The worker's worst case: two Alpaca calls at their timeout plus Firestore.
        ack_deadline_seconds=60,
        message_retention_seconds=86_400,
        retry=RetryPolicy(10, 600),
        dead_letter=DeadLetterPolicy(USER_SYNC_DEAD_LETTER, max_delivery_attempts=5),
    ),
    Subscription(
        name=USER_SYNC_DEAD_LETTER_HOLD,
        topic=USER_SYNC_DEAD_LETTER,
        push_target=None,
        ack_deadline_seconds=60,
        # Long enough for an operator to fix the cause and replay.
        message_retention_seconds=7 * 86_400,
    ),
)


def subscription(name: str) -> Subscription:
    return next(s for s in SUBSCRIPTIONS if s.name == name)


def apply(
    project: str,
    publisher: pubsub_v1.PublisherClient,
    subscriber: pubsub_v1.SubscriberClient,
    push_endpoints: Mapping[str, str | None] | None = None,
    retry_override: RetryPolicy | None = None,
) -> list[str]:
    """Create what is missing and converge push endpoints; idempotent. Returns the names of
    what was created or changed.

    ``push_endpoints`` maps a function name to its URL. A subscription whose target has no URL
    is created as a pull subscription, which the local push bridge delivers from.
    ``retry_override`` replaces every retry policy (tests use seconds, not minutes).
    """
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.protobuf import duration_pb2

    created: list[str] = []
    for topic in TOPICS:
        try:
            publisher.create_topic(name=publisher.topic_path(project, topic))
            created.append(topic)
        except gexc.AlreadyExists:
            pass
    endpoints = push_endpoints or {}
    for sub in SUBSCRIPTIONS:
        request = pubsub_v1.types.Subscription(
            name=subscriber.subscription_path(project, sub.name),
            topic=publisher.topic_path(project, sub.topic),
            ack_deadline_seconds=sub.ack_deadline_seconds,
            message_retention_duration=duration_pb2.Duration(seconds=sub.message_retention_seconds),
        )
        endpoint = endpoints.get(sub.push_target or "")
        if endpoint:
            request.push_config = pubsub_v1.types.PushConfig(push_endpoint=endpoint)
        retry = retry_override if sub.retry and retry_override else sub.retry
        if retry:
            request.retry_policy = pubsub_v1.types.RetryPolicy(
                minimum_backoff=duration_pb2.Duration(seconds=retry.minimum_backoff_seconds),
                maximum_backoff=duration_pb2.Duration(seconds=retry.maximum_backoff_seconds),
            )
        if sub.dead_letter:
            request.dead_letter_policy = pubsub_v1.types.DeadLetterPolicy(
                dead_letter_topic=publisher.topic_path(project, sub.dead_letter.topic),
                max_delivery_attempts=sub.dead_letter.max_delivery_attempts,
            )
        try:
            subscriber.create_subscription(request=request)
            created.append(sub.name)
        except gexc.AlreadyExists:
            # Created earlier (e.g. as pull, before the functions had URLs): converge its push
            # endpoint, so applying with endpoints after applying without them delivers.
            current = subscriber.get_subscription(subscription=request.name)
            if current.push_config.push_endpoint != (endpoint or ""):
                subscriber.modify_push_config(
                    subscription=request.name, push_config=request.push_config
                )
                created.append(sub.name)
    return created
