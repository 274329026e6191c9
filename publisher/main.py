"""The publisher's entry points: ``publish_user_syncs`` (Pub/Sub ``sync-tick``), and
``on_alpaca_config_written`` and ``on_trading_status_written`` (Firestore ``document.v1.written``
on the two documents eligibility is decided from: the roster, the kill-switch audit). Each
decodes its event, then calls this package's use case; an expected transient failure asks for
redelivery quietly (:mod:`agenttrader.redelivery`)."""

from __future__ import annotations

import functions_framework
from cloudevents.http import CloudEvent

from agenttrader import redelivery, runtime
from agenttrader.events import document_change, pubsub_delivery
from agenttrader.logs import get_logger
from publisher import roster
from publisher.kill_switch import actor_of, handle_trading_change
from publisher.tick import fan_out

log = get_logger(__name__)


@functions_framework.cloud_event
def publish_user_syncs(event: CloudEvent) -> None:
    """Publish one ``user-sync`` message per eligible user for this tick."""
    try:
        tick = pubsub_delivery(event)
    except ValueError as err:
        log.error(f"sync-tick event ignored: {err}", message_id=event["id"])
        return
    with redelivery.for_message(tick):
        fan_out(runtime.deps(), tick)


@functions_framework.cloud_event
def on_alpaca_config_written(event: CloudEvent) -> None:
    """Keep the user's roster entry (who a tick publishes to) in step with
    ``users/{uid}/config/alpaca``, whoever wrote it."""
    try:
        change = document_change(event)
    except ValueError as err:
        log.error(f"config event ignored: {err}", event_id=event["id"])
        return
    with redelivery.for_document(change, event["id"]):
        roster.on_source_written(runtime.deps().firestore, change.path)


@functions_framework.cloud_event
def on_trading_status_written(event: CloudEvent) -> None:
    """A write of the kill-switch (Firestore ``written.withAuthContext`` on
    ``users/{uid}/status/trading``): refresh the user's roster entry, and audit a toggle (who,
    and ``enabled`` old → new)."""
    try:
        change = document_change(event)
    except ValueError as err:
        log.error(f"trading status event ignored: {err}", event_id=event["id"])
        return
    deps = runtime.deps()
    actor = actor_of(event.get("authtype"), event.get("authid"))
    with redelivery.for_document(change, event["id"]):
        roster.on_source_written(deps.firestore, change.path)
        handle_trading_change(deps, change, event["id"], actor)
