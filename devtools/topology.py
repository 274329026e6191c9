"""The Pub/Sub topology of :mod:`agenttrader.topology` applied to an emulator (or any project
the caller's clients point at): what the local stack, the tests and the benchmarks start from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from google.api_core import exceptions as gexc

from agenttrader.topology import SUBSCRIPTIONS, TOPICS, RetryPolicy

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1


def apply_topology(
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
