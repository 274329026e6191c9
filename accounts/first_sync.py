"""The ``first_sync`` message new credentials get, whoever stored them (the secrets trigger
for keys a client wrote, ``connect_alpaca`` for an OAuth token): synced at once, whether or
not trading is enabled, with the version of the credentials it is for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agenttrader.deadletter import PUBLISH_TIMEOUT_SECONDS
from agenttrader.errors import DependencyUnavailable
from agenttrader.messages import Reason, SyncRequest
from agenttrader.topology import USER_SYNC

if TYPE_CHECKING:
    from agenttrader.deps import Deps


def publish_first_sync(deps: Deps, uid: str, version: str | None) -> None:
    """Publish and wait for Pub/Sub's acknowledgement; ``DependencyUnavailable`` (retryable)
    when it fails."""
    request = SyncRequest(uid, Reason.FIRST_SYNC, datetime.now(UTC), keys_version=version)
    attributes: dict[str, Any] = request.attributes()  # Any: see deadletter.publish_dead_letter
    try:
        deps.publisher.publish(deps.topic_path(USER_SYNC), request.to_bytes(), **attributes).result(
            timeout=PUBLISH_TIMEOUT_SECONDS
        )
    except Exception as err:  # noqa: BLE001 - any publish failure: the caller retries
        raise DependencyUnavailable(
            f"could not publish the first sync ({type(err).__name__})"
        ) from None
