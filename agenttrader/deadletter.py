"""Publishing permanent failures to ``user-sync-dead-letter``, where operators inspect and
replay them. Attributes say why, so the operator tool filters without decoding bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agenttrader.errors import AgentTraderError, DependencyUnavailable
from agenttrader.logs import redact
from agenttrader.messages import format_timestamp
from agenttrader.topology import USER_SYNC_DEAD_LETTER

if TYPE_CHECKING:
    from agenttrader.deps import Deps

PUBLISH_TIMEOUT_SECONDS = 30.0
MAX_ATTRIBUTE_CHARS = 500
MAX_DEAD_LETTER_BYTES = 64 * 1024
"""A dead letter keeps at most this much of its message's body: no valid ``user-sync``
message comes near it (``MAX_MESSAGE_BYTES``), and a multi-megabyte body would only burden
every reader of the hold subscription; ``data_truncated_from`` then says how long it was."""
SOURCE_WORKER = "worker"
"""``source`` attribute of dead letters the worker published (Pub/Sub's own carry none)."""


def dead_letter_attributes(
    error: AgentTraderError,
    *,
    uid: str | None,
    reason: str | None,
    message_id: str,
    delivery_attempt: int | None,
    pulse_id: str | None,
    failed_at: datetime | None = None,
) -> dict[str, str]:
    attributes = {
        "uid": uid or "",
        "error_class": error.error_class,
        "error": redact(str(error))[:MAX_ATTRIBUTE_CHARS],
        "reason": reason or "",
        "failed_at": format_timestamp(failed_at or datetime.now(UTC)),
        "source": SOURCE_WORKER,
        "original_message_id": message_id,
    }
    if delivery_attempt is not None:
        attributes["delivery_attempt"] = str(delivery_attempt)
    if pulse_id:
        attributes["pulse_id"] = pulse_id
    return {k: v for k, v in attributes.items() if v}


def publish_dead_letter(deps: Deps, data: bytes, attributes: dict[str, str]) -> str:
    """Publish and wait; a failure raises ``DependencyUnavailable`` so the original message is
    redelivered rather than lost. A body over ``MAX_DEAD_LETTER_BYTES`` is cut to it."""
    # Any: publish() takes attributes as **kwargs beside its ordering_key/retry/timeout
    # keywords, so mypy cannot tell a dict[str, str] from those; no attribute bears their names.
    fields: dict[str, Any] = dict(attributes)
    if len(data) > MAX_DEAD_LETTER_BYTES:
        fields["data_truncated_from"] = str(len(data))
        data = data[:MAX_DEAD_LETTER_BYTES]
    try:
        future = deps.publisher.publish(deps.topic_path(USER_SYNC_DEAD_LETTER), data, **fields)
        return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
    except Exception as err:  # noqa: BLE001 - any publish failure means "try again later"
        raise DependencyUnavailable(
            f"could not publish to {USER_SYNC_DEAD_LETTER} ({type(err).__name__})"
        ) from None
