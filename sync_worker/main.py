"""``sync_user`` (Pub/Sub ``user-sync`` push): decode the delivery, then call the worker.

Returning acknowledges; a ``RetryableError`` becomes one WARNING line and HTTP 503, which
Pub/Sub redelivers (:mod:`agenttrader.redelivery`).
"""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from agenttrader import redelivery, runtime
from agenttrader.events import pubsub_delivery
from agenttrader.logs import get_logger
from sync_worker import instance

log = get_logger(__name__)


@functions_framework.cloud_event
def sync_user(event: CloudEvent) -> None:
    """Sync the one user the message names."""
    try:
        delivery = pubsub_delivery(event, runtime.raw_push_body())
    except ValueError as err:
        # Not a Pub/Sub message at all: nothing to dead-letter, and retrying cannot help.
        log.error(f"user-sync event ignored: {err}", message_id=event["id"])
        return
    with redelivery.for_message(delivery):
        instance.worker().handle(delivery)
