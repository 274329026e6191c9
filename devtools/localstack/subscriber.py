"""The Pub/Sub subscriber client of the local stack's pullers (push bridge, dead-letter view).

Pub/Sub accepts messages up to 10 MB. Against the emulator the Python client opens a plain
``grpc.insecure_channel``, which keeps gRPC's default 4 MiB limit on what it receives (its
production channel has none), so a ``Pull`` whose answer holds a message over 4 MiB fails
with ``ResourceExhausted`` — and fails again on every redelivery, taking the messages pulled
with it down too: the subscription wedges. The client built here receives any size, as in
production.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

UNLIMITED = -1
"""gRPC's "no limit" for a message size."""
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", UNLIMITED),
    ("grpc.max_send_message_length", UNLIMITED),
)
"""As the client's production channel sets them."""


def subscriber_client() -> pubsub_v1.SubscriberClient:
    """A ``SubscriberClient`` for the emulator named by ``PUBSUB_EMULATOR_HOST`` (else the
    default one) that pulls messages of any size Pub/Sub allows."""
    import google.cloud.pubsub_v1 as pubsub_v1

    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return pubsub_v1.SubscriberClient()
    import grpc
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    channel = grpc.insecure_channel(host, options=list(_CHANNEL_OPTIONS))
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
