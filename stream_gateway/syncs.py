"""The ``user-sync`` messages the gateway publishes: ``trade_update`` (coalesced per tenant)
and ``reconcile`` (after every connection: the stream has no replay).

:class:`Coalescer` decides, per tenant, when a ``trade_update`` sync goes out: at once when the
tenant's previous one is at least ``interval`` old (the leading edge: a fill's snapshot is
requested without delay), else once at the end of the interval (the trailing edge, however
many updates arrived meanwhile). A burst of 50 partial fills within a second is therefore one
or two syncs, and a steady trickle is one sync per interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agenttrader import topology
from agenttrader.logs import get_logger
from agenttrader.messages import Reason, SyncRequest
from stream_gateway.config import GatewayConfig

if TYPE_CHECKING:
    from agenttrader.deps import Deps

log = get_logger(__name__)

BATCH_LATENCY_SECONDS = 0.05
"""How long the Pub/Sub client gathers messages into one publish request. Updates trickle
in one by one; the client starts a thread per request, so gathering for 50 ms (instead of
the functions' 10 ms) keeps the gateway from starting a thread per message."""


def publisher_client() -> Any:
    """The gateway's Pub/Sub publisher (batches gathered for ``BATCH_LATENCY_SECONDS``)."""
    import google.cloud.pubsub_v1 as pubsub_v1

    return pubsub_v1.PublisherClient(
        batch_settings=pubsub_v1.types.BatchSettings(
            max_messages=500, max_bytes=1_000_000, max_latency=BATCH_LATENCY_SECONDS
        )
    )


@dataclass
class _Tenant:
    last: float
    pending: bool = False


class Coalescer:
    """Per tenant: when its next ``trade_update`` sync may go out (monotonic seconds)."""

    def __init__(self, interval: float = GatewayConfig.coalesce_seconds) -> None:
        self.interval = interval
        self._tenants: dict[str, _Tenant] = {}

    def request(self, uid: str, now: float) -> float | None:
        """An update arrived: ``0.0`` to publish now, a delay to publish after (once), or
        ``None`` when a publish is already scheduled."""
        state = self._tenants.get(uid)
        if state is None or now - state.last >= self.interval:
            self._tenants[uid] = _Tenant(now)
            return 0.0
        if state.pending:
            return None
        state.pending = True
        return state.last + self.interval - now

    def fired(self, uid: str, now: float) -> None:
        """The scheduled publish went out."""
        self._tenants[uid] = _Tenant(now)

    def forget(self, uid: str) -> None:
        self._tenants.pop(uid, None)


class SyncPublisher:
    """Publishes ``user-sync`` messages without waiting for them (failures are counted and
    logged: the tick's reconciliation still reaches the tenant)."""

    def __init__(self, deps: Deps, on_result: Callable[[Reason, bool], None]) -> None:
        self._deps = deps
        self._topic = deps.topic_path(topology.USER_SYNC)
        self._on_result = on_result

    def publish(self, uid: str, reason: Reason, keys_version: str | None) -> None:
        request = SyncRequest(uid, reason, datetime.now(UTC), keys_version=keys_version)
        attributes: dict[str, Any] = request.attributes()
        future = self._deps.publisher.publish(self._topic, request.to_bytes(), **attributes)

        def done(result: Any) -> None:
            failed = result.exception() is not None
            if failed:
                log.warning(
                    "could not publish a stream sync",
                    uid=uid,
                    reason=reason.value,
                    error_class=type(result.exception()).__name__,
                )
            self._on_result(reason, not failed)

        future.add_done_callback(done)
